/**
 * Counts a repeated event and says when to log it: the first one at once, then at most one line per
 * `intervalMs` carrying how many happened since the last line. A flood of refused connections thus
 * costs a handful of log lines, while the metrics keep the exact count.
 */
export class EventSampler {
  readonly #intervalMs: number
  readonly #now: () => number
  #lastReportAt = -Infinity
  #unreported = 0

  constructor (intervalMs: number, now: () => number = Date.now) {
    this.#intervalMs = intervalMs
    this.#now = now
  }

  /** Records one event; returns how many to report (this one included) when a line is due, else `undefined`. */
  record (): number | undefined {
    this.#unreported++
    const now = this.#now()
    if (now - this.#lastReportAt < this.#intervalMs) return undefined
    this.#lastReportAt = now
    const count = this.#unreported
    this.#unreported = 0
    return count
  }
}
