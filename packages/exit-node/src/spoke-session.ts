import type { MuxSession } from '@spokelink/protocol'
import type { GrantedPort } from '@spokelink/protocol'

/** One authenticated agent connection of a spoke, after a successful hello. */
export interface SpokeSession {
  readonly sessionId: string
  readonly spoke: string
  /** Id of the token the agent presented; lets a revocation find its sessions. */
  readonly tokenId: string
  /** sha256 of the secret the agent authenticated with; a reload that changes the entry's hash ends the session. */
  readonly tokenSha256: string
  /** Serial of the client certificate the agent presented (spokes with `requireClientCert`); a revocation ends the session. */
  readonly certSerial?: string
  /** The agent's address as the control port saw it (an ingress's, when one is in front). */
  readonly remoteAddress: string
  readonly agent: string
  /** The agent's software version from its hello; '' when it sent none. */
  readonly agentVersion: string
  /** The agent's `--label`s from its hello (only an allow-list of them reaches metrics). */
  readonly labels: Readonly<Record<string, string>>
  readonly mux: MuxSession
  /** Data-plane ports this session serves, filled in once they are bound. */
  ports: GrantedPort[]
  /** Data streams this session carries now; used to spread new streams. */
  activeStreams: number
  /**
   * Closes the session telling the agent why: WebSocket close 4403 when its credential no longer holds (revocation,
   * expiry), or `closeCode` (1012 "service restart" when the spoke's ports changed and the agent should reconnect).
   */
  readonly disconnect: (reason: string, closeCode?: number) => void
}
