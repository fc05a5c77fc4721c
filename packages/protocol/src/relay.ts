import { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { ProtocolError } from './errors.js'
import { MuxStream } from './mux/mux-stream.js'

/** Options for {@link relay}. */
export interface RelayOptions {
  /**
   * Runs before anything is copied from `b` to `a` (it may read a preamble off `b`, such as the agent's
   * status byte) and calls `done` once when it is through; copying from `a` to `b` starts at once. An error
   * passed to `done` fails the relay with that error. A callback, not a promise: it runs on every new
   * connection, and the promise chain it replaced cost a dozen promises per stream.
   */
  beforeBToA?: (done: (err?: Error) => void) => void
  /**
   * A mux stream's DATA goes to a socket on the other side straight from the session's parser
   * ({@link MuxStream.attachSink}) instead of through the stream's Readable. For the exit-node's data-plane
   * streams (scrape answers to the client: −14 to −16 % CPU per GiB for both processes in alternating
   * pairs on a quiet box); off for the agent's accepted streams, where the same path measured +10 to +25 %
   * (README "Benchmarks", session 6).
   * @default false
   */
  streamToSocketDirect?: boolean
}

/**
 * Copies bytes both ways between two duplexes (a TCP socket and a mux stream) until both have closed.
 * Each side's end is passed on as the other's end (half-close); backpressure pauses the reader while
 * the other side's write buffer is full. An error, or a side closing before it finished both ways,
 * destroys the other side too (a mux stream then sends RST).
 *
 * Resolves with `undefined` after a clean close both ways, or with the first failure. It never rejects.
 *
 * Why not `stream.pipeline()`: two pipelines per connection cost ~100 µs of CPU (an AbortController, an
 * AbortError with a stack, end-of-stream watchers) on every new connection; this is the part of a
 * 2 KB request's latency that is ours to cut. Not `async` for the same reason: its one promise is all
 * it needs, an async function would wrap it in a second.
 */
export function relay (a: Duplex, b: Duplex, options: RelayOptions = {}): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let failure: Error | undefined
    let closed = 0
    const fail = (err: Error): void => {
      failure ??= err
      a.destroy()
      b.destroy()
    }
    const onClose = (side: Duplex): void => {
      if (!side.readableEnded || !side.writableFinished) {
        fail(new ProtocolError('SLK_ERR_PROTO_CLOSED', 'the other end closed before the connection finished'))
      }
      if (++closed === 2) resolve(failure)
    }
    for (const side of [a, b]) {
      side.on('error', fail)
      // A side that is already gone (a stream reset while its upstream was being dialled) emits no 'close' again.
      if (side.closed) onClose(side)
      else side.once('close', () => { onClose(side) })
    }
    const direct = options.streamToSocketDirect === true
    forward(a, b, direct)
    if (options.beforeBToA === undefined) {
      forward(b, a, direct)
      return
    }
    options.beforeBToA((err) => {
      if (err !== undefined) fail(err)
      else if (failure === undefined) forward(b, a, direct)
    })
  })
}

function forward (from: Duplex, to: Duplex, streamToSocketDirect: boolean): void {
  // Mux stream → socket: DATA pieces go from the session's parser straight to the socket's write(), not
  // through the stream's Readable (push, 'data', read): on the bulk path that Readable was the one hop per
  // piece the floor relay does not pay. The stream keeps the backpressure and credit rules (attachSink).
  if (streamToSocketDirect && from instanceof MuxStream && to instanceof Socket) {
    from.attachSink(to)
    const endSink = (): void => { to.end() }
    if (from.readableEnded) endSink()
    else from.once('end', endSink)
    return
  }
  // Bytes already buffered (read with the preamble, or arrived with the SYN) go out in this tick, with the
  // frames queued beside them, instead of one tick later as their own message.
  for (let chunk: unknown = from.read(); chunk !== null; chunk = from.read()) {
    if (!to.write(chunk)) break
  }
  const resume = (): void => { from.resume() }
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause()
  })
  to.on('drain', resume)
  const end = (): void => {
    to.off('drain', resume)
    to.end()
  }
  if (from.readableEnded) {
    end()
    return
  }
  from.once('end', end)
  // A stream read with 'readable' before (a preamble) stays paused when a 'data' listener is added.
  if (to.writableNeedDrain) from.pause()
  else from.resume()
}
