import { EventEmitter } from 'node:events'
import type { SpokeSession } from './spoke-session.js'

/** Events a {@link SessionRegistry} emits. */
export interface SessionRegistryEvents {
  /** The spoke went from no session to one. */
  'spoke-online': [spoke: string, session: SpokeSession]
  /** The spoke's last session ended. */
  'spoke-offline': [spoke: string]
  /** A session ended (emitted before `spoke-offline`). */
  'session-removed': [session: SpokeSession]
}

/**
 * Keeps every live session of every spoke so revocations, metrics and `/v1/sd` can find them.
 * A spoke with several agent replicas has several sessions.
 */
export class SessionRegistry extends EventEmitter<SessionRegistryEvents> {
  readonly #bySpoke = new Map<string, Set<SpokeSession>>()

  /** Adds a session; emits `spoke-online` when it is the spoke's first. */
  add (session: SpokeSession): void {
    let sessions = this.#bySpoke.get(session.spoke)
    if (sessions === undefined) {
      sessions = new Set()
      this.#bySpoke.set(session.spoke, sessions)
    }
    sessions.add(session)
    if (sessions.size === 1) this.emit('spoke-online', session.spoke, session)
  }

  /** Removes a session; emits `spoke-offline` when it was the spoke's last. Idempotent. */
  remove (session: SpokeSession): void {
    const sessions = this.#bySpoke.get(session.spoke)
    if (sessions?.delete(session) !== true) return
    this.emit('session-removed', session)
    if (sessions.size === 0) {
      this.#bySpoke.delete(session.spoke)
      this.emit('spoke-offline', session.spoke)
    }
  }

  /** Live sessions of one spoke. */
  sessionsOf (spoke: string): SpokeSession[] {
    return [...this.#bySpoke.get(spoke) ?? []]
  }

  /** Every live session. */
  all (): SpokeSession[] {
    return [...this.#bySpoke.values()].flatMap((sessions) => [...sessions])
  }

  /** Whether the spoke has at least one live session. */
  isConnected (spoke: string): boolean {
    return this.#bySpoke.has(spoke)
  }
}
