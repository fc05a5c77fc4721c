/**
 * Latency samples in buckets 1 % wide on a log scale, so percentiles stay within 1 % while the memory is fixed
 * (a few hundred counters) however many samples a long run adds.
 */
export class LogHistogram {
  static readonly #GROWTH = 1.01
  /** Samples below this are counted in the first bucket. */
  static readonly #MIN = 0.01
  readonly #counts = new Map<number, number>()
  #count = 0

  add (value: number): void {
    const index = Math.max(0, Math.floor(Math.log(Math.max(value, LogHistogram.#MIN) / LogHistogram.#MIN) / Math.log(LogHistogram.#GROWTH)))
    this.#counts.set(index, (this.#counts.get(index) ?? 0) + 1)
    this.#count++
  }

  get count (): number {
    return this.#count
  }

  /** The `p`-th percentile (0–100), nearest rank, as the upper edge of its bucket; NaN when empty. */
  percentile (p: number): number {
    if (this.#count === 0) return NaN
    const rank = Math.min(this.#count, Math.max(1, Math.ceil((p / 100) * this.#count)))
    let seen = 0
    for (const index of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(index) ?? 0
      if (seen >= rank) return LogHistogram.#MIN * LogHistogram.#GROWTH ** (index + 1)
    }
    return NaN
  }
}
