import type { Readable } from 'node:stream'
import { ProtocolError } from './errors.js'

/** Options for reading a fixed number of bytes from a stream. */
export interface ReadExactlyOptions {
  /** Aborts the read; the stream itself is left alone. */
  signal?: AbortSignal
}

/**
 * Reads exactly `length` bytes from a paused-mode readable without consuming anything after them,
 * so the stream can be handed to `pipeline()` afterwards.
 * @throws ProtocolError SLK_ERR_PROTO_CLOSED when the stream ends or fails first.
 */
export async function readExactly (stream: Readable, length: number, options: ReadExactlyOptions = {}): Promise<Buffer> {
  const { signal } = options
  signal?.throwIfAborted()
  if (length === 0) return Buffer.alloc(0)
  return new Promise<Buffer>((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('readable', tryRead)
      stream.off('end', onEnd)
      stream.off('error', onError)
      stream.off('close', onEnd)
      signal?.removeEventListener('abort', onAbort)
    }
    const fail = (err: Error): void => { cleanup(); reject(err) }
    const onEnd = (): void => {
      fail(new ProtocolError('SLK_ERR_PROTO_CLOSED', `stream ended before ${length} expected bytes arrived`))
    }
    const onError = (err: Error): void => {
      fail(new ProtocolError('SLK_ERR_PROTO_CLOSED', `stream failed before ${length} expected bytes arrived: ${err.message}`, { cause: err }))
    }
    const onAbort = (): void => { fail(signal?.reason instanceof Error ? signal.reason : new Error('aborted')) }
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
      resolve(chunk)
    }
    stream.on('readable', tryRead)
    stream.once('end', onEnd)
    stream.once('close', onEnd)
    stream.once('error', onError)
    signal?.addEventListener('abort', onAbort, { once: true })
    tryRead()
  })
}
