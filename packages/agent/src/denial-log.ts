import type { Logger } from 'pino'
import type { DenyReason } from '@spokelink/http-policy'

/** One refused request, as logged: never headers, never the query string. */
export interface Denial {
  upstream: string
  streamId: number
  method: string
  /** The path, clipped; the query is left out (it is the hub's business and can be long). */
  path: string
  reason: DenyReason
}

/**
 * Logs refused requests: each one at debug, and at warn at most one line per `intervalMs` per
 * upstream — the first refusal at once, then one summary with the counts by reason of those held back,
 * so a hostile hub hammering the policy cannot flood the agent's logs.
 */
export class DenialLog {
  readonly #log: Logger
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #windows = new Map<string, { startedMs: number, held: Map<DenyReason, number>, timer: NodeJS.Timeout | undefined }>()

  constructor (log: Logger, options: { intervalMs: number, now?: () => number }) {
    this.#log = log
    this.#intervalMs = options.intervalMs
    this.#now = options.now ?? Date.now
  }

  /** Records one refusal. */
  record (denial: Denial): void {
    this.#log.debug({ ...denial }, 'request denied by policy')
    const window = this.#windows.get(denial.upstream)
    if (window === undefined || this.#now() - window.startedMs >= this.#intervalMs) {
      if (window !== undefined) this.#flush(denial.upstream)
      this.#log.warn({ upstream: denial.upstream, method: denial.method, path: denial.path, reason: denial.reason }, 'request denied by policy')
      this.#windows.set(denial.upstream, { startedMs: this.#now(), held: new Map(), timer: undefined })
      return
    }
    window.held.set(denial.reason, (window.held.get(denial.reason) ?? 0) + 1)
    window.timer ??= setTimeout(() => { this.#flush(denial.upstream) }, Math.max(0, window.startedMs + this.#intervalMs - this.#now())).unref()
  }

  /** Logs what is held back and stops the timers. */
  close (): void {
    for (const upstream of [...this.#windows.keys()]) this.#flush(upstream)
  }

  #flush (upstream: string): void {
    const window = this.#windows.get(upstream)
    if (window === undefined) return
    clearTimeout(window.timer)
    this.#windows.delete(upstream)
    if (window.held.size === 0) return
    let count = 0
    for (const n of window.held.values()) count += n
    this.#log.warn({ upstream, count, reasons: Object.fromEntries(window.held), intervalMs: this.#intervalMs }, 'requests denied by policy')
  }
}
