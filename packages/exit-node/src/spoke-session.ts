import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { WebSocket } from 'ws'
import {
  CLOSE_CODE,
  ProtocolError,
  createMuxSession,
  createWebSocketDuplex,
  encodeFramedJson,
  parseHello,
  readFramedJson,
} from '@spokelink/protocol'
import type { GrantedPort, Hello, MuxSession, MuxSessionOptions, MuxStream, Welcome } from '@spokelink/protocol'
import type { PortConfig, SessionCredential } from '@spokelink/auth'
import { serveCertificateRequests } from './certificate-requests.js'
import { ExitNodeError } from './errors.js'
import { clipUntrusted } from './untrusted-text.js'

/** Options of {@link SpokeSession}: the exit-node's, resolved. */
export interface SpokeSessionOptions {
  /** The multiplexer's options, keepalive included. */
  mux: MuxSessionOptions
  /** Interval of WebSocket pings. */
  keepaliveIntervalMs: number
  /** Time the agent has to send its hello after the upgrade. */
  helloTimeoutMs: number
  /** Peer-chosen values are cut to this length in logs. */
  maxLogFieldChars: number
}

/** The exit-node's decision on a parsed hello: a refusal reason, or the ports to bind. */
export type HelloAdmission =
  | { ok: false, reason: string }
  | {
    ok: true
    /** The spoke's ports whose upstream the agent offers. */
    wanted: PortConfig[]
    /** Upstreams of the spoke the agent does not offer. */
    missing: string[]
    /** Names of the spoke's hub services, sent in the welcome (whose `hubServices` field says the exit-node serves hub streams). */
    hubServices: string[]
    /** Issues client certificates over the control stream (spokes with `requireClientCert`). */
    issueCertificate?: ((session: SpokeSession, csrPem: string) => Promise<{ certPem: string, serial: string, notAfter: Date }>) | undefined
  }

/** What a {@link SpokeSession} needs from the exit-node. */
export interface SpokeSessionDeps {
  /** The exit-node's logger; the session logs through a child naming spoke, session and token. */
  logger: Logger
  /** Decides a hello against the spokes file as it is now (revocation, removed spoke). */
  admit: (session: SpokeSession, hello: Hello) => HelloAdmission
  /** Binds or joins the session's data-plane ports, and forgets the session. */
  dataPlane: {
    attach: (session: SpokeSession, ports: PortConfig[]) => Promise<GrantedPort[]>
    detach: (session: SpokeSession) => void
  }
  /** Makes a welcomed session live (the registry); called before the welcome is sent. */
  register: (session: SpokeSession) => void
  /** Serves a stream the agent opened after the welcome (a hub stream, README "Remote write through the tunnel"). */
  serveAgentStream: (session: SpokeSession, stream: MuxStream) => void
}

interface SpokeSessionEvents {
  /** The hello was accepted and welcomed. */
  ready: []
  /** The mux closed; `ready` says whether the session had been welcomed. */
  close: [err: Error | undefined, ready: boolean]
}

/**
 * One agent connection of a spoke, from the upgrade on: owns its mux, WebSocket pings, the hello and its timer,
 * the data streams it carries now and how it is disconnected.
 */
export class SpokeSession extends EventEmitter<SpokeSessionEvents> {
  readonly sessionId = randomBytes(6).toString('hex')
  readonly spoke: string
  /** Id of the token the agent presented; lets a revocation find its sessions. */
  readonly tokenId: string
  /** sha256 of the secret the agent authenticated with; a reload that changes the entry's hash ends the session. */
  readonly tokenSha256: string
  /** Serial of the client certificate the agent presented (spokes with `requireClientCert`); a revocation ends the session. */
  readonly certSerial?: string
  /** The agent's address as the control port saw it (an ingress's, when one is in front). */
  readonly remoteAddress: string
  readonly mux: MuxSession
  readonly log: Logger
  readonly #ws: WebSocket
  readonly #options: SpokeSessionOptions
  readonly #deps: SpokeSessionDeps
  /** The address as the socket gave it: logs leave the field out when it is unknown. */
  readonly #socketAddress: string | undefined
  readonly #openedAt = Date.now()
  readonly #wsPing: NodeJS.Timeout
  readonly #helloTimer: NodeJS.Timeout
  #ready = false
  #agent = ''
  #agentVersion = ''
  #labels: Readonly<Record<string, string>> = {}
  #ports: GrantedPort[] = []
  #activeStreams = 0

  /** Starts the session; construct it synchronously on upgrade so no message is lost. */
  constructor (ws: WebSocket, credential: SessionCredential, remoteAddress: string | undefined, options: SpokeSessionOptions, deps: SpokeSessionDeps) {
    super()
    this.spoke = credential.spoke
    this.tokenId = credential.tokenId
    this.tokenSha256 = credential.tokenSha256
    if (credential.certSerial !== undefined) this.certSerial = credential.certSerial
    this.remoteAddress = remoteAddress ?? 'unknown'
    this.#socketAddress = remoteAddress
    this.#ws = ws
    this.#options = options
    this.#deps = deps
    this.log = deps.logger.child({ spoke: this.spoke, sessionId: this.sessionId, tokenId: this.tokenId })
    this.mux = createMuxSession(createWebSocketDuplex(ws), 'server', options.mux, { logger: this.log })
    // WebSocket pings keep idle proxies and load balancers from dropping the socket.
    this.#wsPing = setInterval(() => { ws.ping() }, options.keepaliveIntervalMs).unref()
    this.#helloTimer = setTimeout(() => {
      this.log.warn({ remoteAddress: this.#socketAddress }, 'agent sent no hello in time')
      ws.close(CLOSE_CODE.HELLO_FAILED, 'no hello in time')
      this.mux.abort(new ExitNodeError('SLK_ERR_EXIT_HELLO', 'agent sent no hello in time'))
    }, options.helloTimeoutMs)
    this.mux.on('close', (err?: Error) => {
      clearInterval(this.#wsPing)
      clearTimeout(this.#helloTimer)
      this.emit('close', err, this.#ready)
      if (this.#ready) this.log.info({ err, durationMs: Date.now() - this.#openedAt }, 'session closed')
    })
    this.mux.on('stream', (stream: MuxStream) => {
      stream.on('error', (err) => { this.log.debug({ streamId: stream.id, err }, 'agent stream closed') })
      if (this.#ready) {
        this.#deps.serveAgentStream(this, stream)
        return
      }
      if (stream.id !== 1) {
        // Before the welcome an agent opens only the control stream; anything else is refused rather than left hanging.
        stream.destroy()
        return
      }
      void this.runHello(stream).then((ready) => {
        clearTimeout(this.#helloTimer)
        if (!ready) return
        this.#ready = true
        this.log.info({ agent: clipUntrusted(this.#agent, this.#options.maxLogFieldChars), remoteAddress: this.#socketAddress, ports: this.#ports }, 'session opened')
        this.emit('ready')
      })
    })
  }

  get agent (): string { return this.#agent }
  /** The agent's software version from its hello; '' when it sent none. */
  get agentVersion (): string { return this.#agentVersion }
  /** The agent's `--label`s from its hello (only an allow-list of them reaches metrics). */
  get labels (): Readonly<Record<string, string>> { return this.#labels }
  /** Data-plane ports this session serves, filled in once they are bound. */
  get ports (): readonly GrantedPort[] { return this.#ports }
  /** Data streams this session carries now; used to spread new streams. */
  get activeStreams (): number { return this.#activeStreams }

  /** A data stream of this session opened. */
  streamOpened (): void { this.#activeStreams++ }
  /** A data stream of this session ended. */
  streamClosed (): void { this.#activeStreams-- }

  /**
   * Closes the session telling the agent why: WebSocket close 4403 when its credential no longer holds (revocation,
   * expiry), or `closeCode` (1012 "service restart" when the spoke's ports changed and the agent should reconnect).
   */
  disconnect (reason: string, closeCode: number = CLOSE_CODE.REVOKED): void {
    // A close frame tells the agent why; the abort backs it up if the agent does not answer.
    this.#ws.close(closeCode, reason)
    setTimeout(() => { this.mux.abort(new ExitNodeError('SLK_ERR_EXIT_SESSION_REVOKED', `session closed: ${reason}`)) }, 1000).unref()
  }

  /** Reads the hello from the control stream, binds the ports and welcomes the agent; false when the hello failed. */
  async runHello (control: MuxStream): Promise<boolean> {
    const fail = (code: string, message: string): false => {
      this.log.warn({ code, reason: clipUntrusted(message, this.#options.maxLogFieldChars) }, 'hello refused')
      const welcome: Welcome = { ok: false, code, error: message }
      control.end(encodeFramedJson(welcome))
      void this.mux.close({ graceMs: 1000 })
      return false
    }
    let hello
    try {
      // No deadline of its own: the hello timer aborts the mux, which fails this read.
      hello = parseHello(await readFramedJson(control))
    } catch (err) {
      return err instanceof ProtocolError ? fail(err.code, err.message) : fail('SLK_ERR_PROTO_HEADER_INVALID', 'hello could not be read')
    }
    const admission = this.#deps.admit(this, hello)
    if (!admission.ok) return fail('SLK_ERR_EXIT_SESSION_REVOKED', admission.reason)
    if (this.mux.closed) return false
    this.#agent = hello.agent
    this.#agentVersion = hello.agentVersion ?? ''
    this.#labels = hello.labels
    this.#ports = await this.#deps.dataPlane.attach(this, admission.wanted)
    const ports = this.#ports
    if (this.mux.closed) {
      this.#deps.dataPlane.detach(this)
      return false
    }
    this.#deps.register(this)
    if (admission.missing.length > 0) this.log.warn({ missing: admission.missing }, 'agent does not offer every upstream of its spoke')
    const { issueCertificate } = admission
    const welcome: Welcome = issueCertificate === undefined
      ? { ok: true, spoke: this.spoke, ports, hubServices: admission.hubServices }
      : { ok: true, spoke: this.spoke, ports, clientCert: 'required', hubServices: admission.hubServices }
    control.write(encodeFramedJson(welcome))
    // The control stream stays open for the session's life; after the welcome it carries certificate requests only.
    if (issueCertificate === undefined) control.resume()
    else void serveCertificateRequests(control, async (csrPem) => issueCertificate(this, csrPem), this.log)
    return true
  }
}
