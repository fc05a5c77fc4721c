import type { Readable } from 'node:stream'
import { ProtocolError } from './errors.js'

/** Options for reading a fixed number of bytes from a stream. */
export interface ReadExactlyOptions {
  /** Aborts the read; the stream itself is left alone. */
  signal?: AbortSignal
}

/** Called once by {@link readExactlyThen}: the bytes, or why they never came. */
export type ReadExactlyCallback = (err: Error | undefined, bytes: Buffer) => void

const NO_BYTES = Buffer.alloc(0)

/**
 * The callback core of {@link readExactly}: calls `done` once with exactly `length` bytes (at once, before it
 * returns, when they are already buffered), or with SLK_ERR_PROTO_CLOSED when the stream ends or fails first.
 * The stream-open path reads its header and status byte with it, with no promise per read (README "2 KB GET on
 * a new connection"). Returns a function that stops waiting without calling `done`.
 */
export function readExactlyThen (stream: Readable, length: number, done: ReadExactlyCallback): () => void {
  if (length === 0) {
    done(undefined, NO_BYTES)
    return () => {}
  }
  const cleanup = (): void => {
    stream.off('readable', tryRead)
    stream.off('end', onEnd)
    stream.off('error', onError)
    stream.off('close', onEnd)
  }
  const onEnd = (): void => {
    cleanup()
    done(new ProtocolError('SLK_ERR_PROTO_CLOSED', `stream ended before ${length} expected bytes arrived`), NO_BYTES)
  }
  const onError = (err: Error): void => {
    cleanup()
    done(new ProtocolError('SLK_ERR_PROTO_CLOSED', `stream failed before ${length} expected bytes arrived: ${err.message}`, { cause: err }), NO_BYTES)
  }
  function tryRead (): void {
    const chunk: unknown = stream.read(length)
    if (chunk === null) {
      if (stream.readableEnded || stream.destroyed) onEnd()
      return
    }
    if (!Buffer.isBuffer(chunk) || chunk.length < length) {
      onEnd()
      return
    }
    cleanup()
    done(undefined, chunk)
  }
  stream.on('readable', tryRead)
  stream.once('end', onEnd)
  stream.once('close', onEnd)
  stream.once('error', onError)
  tryRead()
  return cleanup
}

/**
 * Reads exactly `length` bytes from a paused-mode readable without consuming anything after them,
 * so the stream can be handed to `pipeline()` afterwards.
 * @throws ProtocolError SLK_ERR_PROTO_CLOSED when the stream ends or fails first.
 */
export async function readExactly (stream: Readable, length: number, options: ReadExactlyOptions = {}): Promise<Buffer> {
  return abortableRead(options.signal, (done) => readExactlyThen(stream, length, done))
}

/**
 * A callback-style read (`start` returns its stop function) as a promise that `signal` can abort: the read is
 * stopped and the promise rejects with the signal's reason.
 */
export async function abortableRead<T> (signal: AbortSignal | undefined, start: (done: (err: Error | undefined, value: T) => void) => () => void): Promise<T> {
  signal?.throwIfAborted()
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      stopReading()
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    const stopReading = start((err, value) => {
      signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve(value)
      else reject(err)
    })
  })
}
