import type { Duplex } from 'node:stream'
import type { MuxClock } from './mux/clock.js'

/**
 * Starts a callback-style read on `stream` (`start`, e.g. `(done) => readExactlyThen(stream, 1, done)`) and
 * destroys the stream with `timeoutError()` if the read has not called back within `timeoutMs`, which fails
 * the read too; `done` gets what the read called back with. A plain timer, cleared when the read settles (an
 * `AbortSignal.timeout()` per stream would keep its timer alive for the whole timeout), and no promise: the
 * stream-open path reads its header and status byte with it on every new connection.
 */
export function readWithin<T> (stream: Duplex, timeoutMs: number, timeoutError: () => Error, clock: MuxClock,
  start: (done: (err: Error | undefined, value: T) => void) => unknown, done: (err: Error | undefined, value: T) => void): void {
  const cancel = clock.setTimeout(() => { stream.destroy(timeoutError()) }, timeoutMs)
  start((err, value) => {
    cancel()
    done(err, value)
  })
}
