/** Options of a {@link FailedAuthLimiter}. */
export interface FailedAuthLimiterOptions {
  /** Failed attempts a source may make in a burst. */
  burst: number
  /** One more failed attempt is allowed after each period of this length. */
  refillMs: number
  /** Sources remembered at once; the least recently seen is forgotten first. */
  maxSources: number
}

interface Bucket {
  tokens: number
  updatedAtMs: number
}

/**
 * A token bucket of failed upgrade attempts per source. Each refusal (bad token, wrong version, session limit)
 * spends one token; a source without a token left is answered 429 with `Retry-After` until one has refilled.
 * Memory is bounded: at most `maxSources` buckets (an LRU via Map order), so an attacker rotating through
 * addresses cannot grow it; a forgotten source starts again with a full bucket, which costs the attacker as much
 * as a fresh address does.
 */
export class FailedAuthLimiter {
  readonly #options: Readonly<FailedAuthLimiterOptions>
  readonly #buckets = new Map<string, Bucket>()

  constructor (options: FailedAuthLimiterOptions) {
    this.#options = Object.freeze({ ...options })
  }

  /**
   * Records one failed attempt of `source` at `nowMs`. Returns 0 when the source still had budget for it, else
   * how many ms until it has budget again (the attempt is then over budget and spends nothing).
   */
  charge (source: string, nowMs: number): number {
    const bucket = this.#refilled(source, nowMs)
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) * this.#options.refillMs))
  }

  /** Sources remembered now (≤ `maxSources`). */
  get size (): number {
    return this.#buckets.size
  }

  #refilled (source: string, nowMs: number): Bucket {
    const { burst, refillMs, maxSources } = this.#options
    let bucket = this.#buckets.get(source)
    if (bucket === undefined) {
      bucket = { tokens: burst, updatedAtMs: nowMs }
    } else {
      // Re-inserting keeps Map order least-recently-seen first.
      this.#buckets.delete(source)
      const elapsed = Math.max(0, nowMs - bucket.updatedAtMs)
      bucket.tokens = Math.min(burst, bucket.tokens + elapsed / refillMs)
      bucket.updatedAtMs = nowMs
    }
    this.#buckets.set(source, bucket)
    while (this.#buckets.size > maxSources) {
      const oldest = this.#buckets.keys().next()
      if (oldest.done === true) break
      this.#buckets.delete(oldest.value)
    }
    return bucket
  }
}
