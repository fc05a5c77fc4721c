import type { SpokeConfig, SpokesConfig } from '@spokelink/auth'
import type { SessionRegistry } from './session-registry.js'
import type { SpokeSession } from './spoke-session.js'
import type { TrafficMeter } from './traffic-meter.js'

/** One configured spoke as operators see it (`/v1/spokes`, the status page, `spokelink status`). */
export interface SpokeStatus {
  spoke: string
  connected: boolean
  sessions: number
  /** Agent software version of the newest session ('' when unknown). */
  agentVersion: string
  /** Agent names (hostnames, pod names) of the live sessions. */
  agents: string[]
  /** Highest round-trip time over the spoke's live sessions, from yamux pings; null before the first pong. */
  rttSeconds: number | null
  /** Payload bytes towards the spoke since the exit-node started. */
  bytesIn: number
  /** Payload bytes from the spoke since the exit-node started. */
  bytesOut: number
  /** Times a stream waited for the peer's window, summed over every session since start. */
  windowStalls: number
  /** Now while connected, else when its last session ended; null when never seen since start. */
  lastSeen: string | null
  /** Soonest expiry of the spoke's active (not revoked, not expired) tokens; null when none expires. */
  tokenExpiry: string | null
  /** The allow-listed hello labels of the newest session (`infoLabels`). */
  labels: Record<string, string>
}

/** Longest hello label value kept for `spokelink_spoke_info` and the status page. */
export const MAX_INFO_LABEL_VALUE_LENGTH = 128

interface Remembered {
  lastSeenMs: number
  agentVersion: string
  labels: Record<string, string>
  /** Window stalls of sessions that ended. */
  closedStalls: number
}

/**
 * The fleet's state per configured spoke, computed on demand from the spokes file, the live sessions and the traffic
 * meter. What it remembers (last seen, last agent version) is bounded by the configured spokes: `prune()` forgets the
 * ones a reload removed.
 */
export class FleetView {
  readonly #sessions: SessionRegistry
  readonly #traffic: TrafficMeter
  readonly #clock: () => Date
  readonly #infoLabels: readonly string[]
  readonly #remembered = new Map<string, Remembered>()
  #spokes: SpokesConfig

  constructor (spokes: SpokesConfig, deps: { sessions: SessionRegistry, traffic: TrafficMeter, clock: () => Date, infoLabels: readonly string[] }) {
    this.#spokes = spokes
    this.#sessions = deps.sessions
    this.#traffic = deps.traffic
    this.#clock = deps.clock
    this.#infoLabels = deps.infoLabels
    this.#sessions.on('spoke-online', (_spoke, session) => { this.#remember(session) })
    this.#sessions.on('session-removed', (session) => {
      const entry = this.#remember(session)
      entry.closedStalls += session.mux.stats.windowStalls
    })
  }

  /** Takes a reloaded spokes file; what was remembered of removed spokes is forgotten. Returns the removed spokes. */
  setSpokes (spokes: SpokesConfig): SpokeConfig[] {
    const names = new Set(spokes.spokes.map((spoke) => spoke.name))
    const removed = this.#spokes.spokes.filter((spoke) => !names.has(spoke.name))
    this.#spokes = spokes
    for (const { name: spoke } of removed) {
      this.#remembered.delete(spoke)
      this.#traffic.forget(spoke)
    }
    return removed
  }

  /** Records a session that just finished its hello (the newest one names the agent version). */
  sessionOpened (session: SpokeSession): void {
    this.#remember(session)
  }

  /** The allow-listed hello label names, in order. */
  get infoLabels (): readonly string[] {
    return this.#infoLabels
  }

  /** Every configured spoke, in spokes-file order. */
  statuses (): SpokeStatus[] {
    this.#traffic.flush()
    const now = this.#clock()
    return this.#spokes.spokes.map((config) => {
      const live = this.#sessions.sessionsOf(config.name)
      const remembered = this.#remembered.get(config.name)
      const rtts = live.map((session) => session.mux.stats.rttMs).filter((rtt) => rtt !== undefined)
      const traffic = this.#traffic.totalOf(config.name)
      const liveStalls = live.reduce((sum, session) => sum + session.mux.stats.windowStalls, 0)
      const lastSeenMs = live.length > 0 ? now.getTime() : remembered?.lastSeenMs
      const expiries = config.tokens
        .filter((token) => token.revoked !== true && token.expires !== undefined && token.expires.getTime() > now.getTime())
        .map((token) => token.expires?.getTime() ?? Infinity)
      return {
        spoke: config.name,
        connected: live.length > 0,
        sessions: live.length,
        agentVersion: remembered?.agentVersion ?? '',
        agents: live.map((session) => session.agent),
        rttSeconds: rtts.length > 0 ? Math.max(...rtts) / 1000 : null,
        bytesIn: traffic.in,
        bytesOut: traffic.out,
        windowStalls: (remembered?.closedStalls ?? 0) + liveStalls,
        lastSeen: lastSeenMs === undefined ? null : new Date(lastSeenMs).toISOString(),
        tokenExpiry: expiries.length > 0 ? new Date(Math.min(...expiries)).toISOString() : null,
        labels: remembered?.labels ?? {},
      }
    })
  }

  #remember (session: SpokeSession): Remembered {
    let entry = this.#remembered.get(session.spoke)
    if (entry === undefined) {
      entry = { lastSeenMs: 0, agentVersion: '', labels: {}, closedStalls: 0 }
      this.#remembered.set(session.spoke, entry)
    }
    entry.lastSeenMs = this.#clock().getTime()
    entry.agentVersion = session.agentVersion.slice(0, MAX_INFO_LABEL_VALUE_LENGTH)
    const labels: Record<string, string> = {}
    for (const name of this.#infoLabels) {
      const value = session.labels[name]
      if (value !== undefined) labels[name] = value.slice(0, MAX_INFO_LABEL_VALUE_LENGTH)
    }
    entry.labels = labels
    return entry
  }
}
