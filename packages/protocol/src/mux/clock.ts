import { performance } from 'node:perf_hooks'

/** Cancels a timer armed with {@link MuxClock.setTimeout}; calling it after the timer fired does nothing. */
export type CancelTimer = () => void

/**
 * Time as the mux's timers see it (keepalive, ping timeouts, stream open deadlines). Injected so tests
 * can drive those timers with a manual clock over real sockets instead of waiting for them.
 */
export interface MuxClock {
  /** Monotonic milliseconds. */
  now: () => number
  /** Runs `cb` once after `ms`; the timer never keeps the process alive. */
  setTimeout: (cb: () => void, ms: number) => CancelTimer
}

/** `performance.now()` and unref'd Node timers. */
export const SYSTEM_CLOCK: MuxClock = Object.freeze({
  now: () => performance.now(),
  setTimeout: (cb: () => void, ms: number): CancelTimer => {
    const timer = setTimeout(cb, ms)
    timer.unref()
    return () => { clearTimeout(timer) }
  },
})
