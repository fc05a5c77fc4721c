/** A clock whose time moves only when the test says so; satisfies `MuxClock` from `@spokelink/protocol`. */
export interface ManualClock {
  /** The current time in ms (starts at 0). */
  now: () => number
  /** Arms a timer that fires once the clock is advanced `ms` past now; returns its cancel function. */
  setTimeout: (cb: () => void, ms: number) => () => void
  /** Moves time forward by `ms`, firing every timer that comes due, in due order, at its due time. */
  advance: (ms: number) => void
  /** Timers armed and not yet fired or cancelled. */
  readonly pendingTimers: number
}

interface ManualTimer { at: number, seq: number, cb: () => void }

/**
 * Creates a {@link ManualClock}: inject it where code takes a clock, so timer logic runs without
 * waiting and without fake timers (which must never wrap real sockets).
 */
export function createManualClock (): ManualClock {
  let time = 0
  let seq = 0
  const timers = new Set<ManualTimer>()
  const nextDue = (until: number): ManualTimer | undefined => {
    let first: ManualTimer | undefined
    for (const t of timers) {
      if (t.at > until) continue
      if (first === undefined || t.at < first.at || (t.at === first.at && t.seq < first.seq)) first = t
    }
    return first
  }
  return {
    now: () => time,
    setTimeout: (cb, ms) => {
      const timer = { at: time + Math.max(0, ms), seq: seq++, cb }
      timers.add(timer)
      return () => { timers.delete(timer) }
    },
    advance: (ms) => {
      const until = time + ms
      for (let t = nextDue(until); t !== undefined; t = nextDue(until)) {
        timers.delete(t)
        time = t.at
        t.cb()
      }
      time = until
    },
    get pendingTimers () { return timers.size },
  }
}
