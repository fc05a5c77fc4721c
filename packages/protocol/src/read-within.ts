import type { Duplex } from 'node:stream'
import { SYSTEM_CLOCK } from './mux/clock.js'
import type { MuxClock } from './mux/clock.js'

/**
 * Runs `read` on `stream` and destroys the stream with `timeoutError()` if it has not settled within
 * `timeoutMs`, which fails the read too. A plain timer, cleared when the read settles: an
 * `AbortSignal.timeout()` per stream would keep its timer and signal alive for the whole timeout.
 */
export async function readWithin<T> (stream: Duplex, timeoutMs: number, timeoutError: () => Error, read: () => Promise<T>, clock: MuxClock = SYSTEM_CLOCK): Promise<T> {
  const cancel = clock.setTimeout(() => { stream.destroy(timeoutError()) }, timeoutMs)
  try {
    return await read()
  } finally {
    cancel()
  }
}
