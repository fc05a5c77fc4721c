/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** First delay ceiling. @default 1000 */
  initialDelayMs?: number
  /** Delay ceiling cap. @default 30000 */
  maxDelayMs?: number
  /** A connection that lasted this long resets the backoff. @default 60000 */
  stableAfterMs?: number
  /**
   * After the exit-node ended a session on purpose (1001 restart, 1012 reconfiguration), the ceiling starts at
   * 2·`initialDelayMs` and stops here (at most `maxDelayMs`): the exit-node is expected back within seconds, and once the ceiling is
   * reached a fleet of N agents sends about 2·N ÷ this attempts per second (1,000 agents: ~400/s). @default 5000
   */
  plannedMaxDelayMs?: number
  /** How long after such a close the ceiling stops at `plannedMaxDelayMs`; then it grows on as usual. @default 60000 */
  plannedWindowMs?: number
}

/** Defaults of {@link BackoffOptions}. */
export const BACKOFF_DEFAULTS = {
  initialDelayMs: 1000,
  maxDelayMs: 30_000,
  stableAfterMs: 60_000,
  plannedMaxDelayMs: 5000,
  plannedWindowMs: 60_000,
} satisfies Required<BackoffOptions>

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
 * the n-th delay is uniform in [0, min(cap, initial·2ⁿ)], so a fleet restarting together spreads out.
 * After a planned close the ceiling stops growing at `plannedMaxDelayMs` for `plannedWindowMs`: growing towards
 * 30 s while a restarting exit-node is down for a few seconds would leave the last agents out for up to 30 s
 * after it is back. The first retry stays within 2·`initialDelayMs`, not the whole ceiling, since in a rolling
 * update another replica is already ready: a 0–5 s wait would lose a second scrape at a 3 s scrape interval.
 */
export class Backoff {
  readonly #options: Required<BackoffOptions>
  readonly #rng: () => number
  readonly #now: () => number
  #attempt = 0
  #connectedAt: number | undefined
  /** End of the flat-ceiling window opened by a planned close; undefined outside one. */
  #plannedUntil: number | undefined

  constructor (options: BackoffOptions = {}, deps: { rng?: () => number, now?: () => number } = {}) {
    this.#options = { ...BACKOFF_DEFAULTS, ...options }
    this.#rng = deps.rng ?? Math.random
    this.#now = deps.now ?? Date.now
  }

  /** Records that a connection was established now. */
  connected (): void {
    this.#connectedAt = this.#now()
    this.#plannedUntil = undefined
  }

  /**
   * The delay before the next attempt. A connection that stayed up `stableAfterMs` resets the sequence, and so does
   * one the server ended on purpose (`planned`: it closed an established session for a restart or a
   * reconfiguration): earlier failures say nothing about the next attempt then, and a rolling update of the
   * exit-node soon after a reconnect must not wait out their backoff. A planned close also opens the flat window.
   */
  nextDelayMs (options: { planned?: boolean } = {}): number {
    const now = this.#now()
    if (this.#connectedAt !== undefined) {
      if (options.planned === true) this.#plannedUntil = now + this.#options.plannedWindowMs
      if (options.planned === true || now - this.#connectedAt >= this.#options.stableAfterMs) this.#attempt = 0
    }
    this.#connectedAt = undefined
    if (this.#plannedUntil !== undefined && now >= this.#plannedUntil) this.#plannedUntil = undefined
    const growing = Math.min(this.#options.maxDelayMs, this.#options.initialDelayMs * 2 ** Math.min(this.#attempt, 30))
    // In the window the sequence starts one step up (2 s), so a fleet's first retries spread over two seconds.
    const ceiling = this.#plannedUntil === undefined ? growing : Math.min(2 * growing, this.#options.plannedMaxDelayMs, this.#options.maxDelayMs)
    this.#attempt++
    return Math.floor(this.#rng() * ceiling)
  }

  /** Attempts since the last reset. */
  get attempt (): number {
    return this.#attempt
  }
}
