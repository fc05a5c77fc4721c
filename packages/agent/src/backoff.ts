/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** First delay ceiling. @default 1000 */
  initialDelayMs?: number
  /** Delay ceiling cap. @default 30000 */
  maxDelayMs?: number
  /** A connection that lasted this long resets the backoff. @default 60000 */
  stableAfterMs?: number
}

/** Defaults of {@link BackoffOptions}. */
export const BACKOFF_DEFAULTS = { initialDelayMs: 1000, maxDelayMs: 30_000, stableAfterMs: 60_000 } satisfies Required<BackoffOptions>

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
 * the n-th delay is uniform in [0, min(cap, initial·2ⁿ)], so a fleet restarting together spreads out.
 */
export class Backoff {
  readonly #options: Required<BackoffOptions>
  readonly #rng: () => number
  readonly #now: () => number
  #attempt = 0
  #connectedAt: number | undefined

  constructor (options: BackoffOptions = {}, deps: { rng?: () => number, now?: () => number } = {}) {
    this.#options = { ...BACKOFF_DEFAULTS, ...options }
    this.#rng = deps.rng ?? Math.random
    this.#now = deps.now ?? Date.now
  }

  /** Records that a connection was established now. */
  connected (): void {
    this.#connectedAt = this.#now()
  }

  /**
   * The delay before the next attempt. A connection that stayed up `stableAfterMs` resets the sequence, and so does
   * one the server ended on purpose (`planned`: it closed an established session for a restart or a
   * reconfiguration): earlier failures say nothing about the next attempt then, and a rolling update of the
   * exit-node soon after a reconnect must not wait out their backoff.
   */
  nextDelayMs (options: { planned?: boolean } = {}): number {
    if (this.#connectedAt !== undefined && (options.planned === true || this.#now() - this.#connectedAt >= this.#options.stableAfterMs)) this.#attempt = 0
    this.#connectedAt = undefined
    const ceiling = Math.min(this.#options.maxDelayMs, this.#options.initialDelayMs * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    return Math.floor(this.#rng() * ceiling)
  }

  /** Attempts since the last reset. */
  get attempt (): number {
    return this.#attempt
  }
}
