import type { CancelTimer, MuxClock } from './clock.js'

/**
 * Deadlines of the streams we opened that the peer has not answered yet (hashicorp/yamux
 * StreamOpenTimeout). Every deadline is the open time + `timeoutMs`, so insertion order is deadline
 * order and one timer armed for the oldest serves them all; an answered stream costs nothing but its
 * Map entry being deleted.
 */
export class OpenDeadlines<T> {
  readonly #timeoutMs: number
  readonly #clock: MuxClock
  readonly #onExpire: (item: T) => void
  readonly #deadlines = new Map<T, number>()
  #cancelTimer: CancelTimer | undefined
  /** The deadline the timer was armed for; its entry may have been answered since. */
  #armedFor = 0

  /** `timeoutMs` 0 disables deadlines; `onExpire` is called once per item whose deadline passed. */
  constructor (timeoutMs: number, clock: MuxClock, onExpire: (item: T) => void) {
    this.#timeoutMs = timeoutMs
    this.#clock = clock
    this.#onExpire = onExpire
  }

  /** Items waiting for an answer. */
  get size (): number {
    return this.#deadlines.size
  }

  /** Starts `item`'s deadline. */
  add (item: T): void {
    if (this.#timeoutMs <= 0) return
    this.#deadlines.set(item, this.#clock.now() + this.#timeoutMs)
    this.#arm()
  }

  /** `item` was answered (or is gone): no deadline any more. */
  delete (item: T): void {
    this.#deadlines.delete(item)
  }

  /** Drops every deadline and the timer. */
  clear (): void {
    this.#deadlines.clear()
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
  }

  #arm (): void {
    if (this.#cancelTimer !== undefined) return
    // Only the first entry matters: it is the oldest, so its deadline is the earliest.
    const oldest = this.#deadlines.values().next()
    if (oldest.done === true) return
    this.#armedFor = oldest.value
    this.#cancelTimer = this.#clock.setTimeout(this.#expire, Math.max(0, oldest.value - this.#clock.now()))
  }

  readonly #expire = (): void => {
    this.#cancelTimer = undefined
    // A timer can fire a millisecond before the clock agrees: the deadline it was armed for is due. Not the
    // oldest entry's now: the one it was armed for may have been answered, and a later one is not due yet.
    const now = Math.max(this.#clock.now(), this.#armedFor)
    for (const [item, deadline] of this.#deadlines) {
      if (deadline > now) break
      this.#deadlines.delete(item)
      this.#onExpire(item)
    }
    this.#arm()
  }
}
