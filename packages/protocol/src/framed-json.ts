import type { Readable, Writable } from 'node:stream'
import { ProtocolError } from './errors.js'
import { abortableRead, readExactlyThen } from './read-exactly.js'

/** Bytes of the big-endian length prefix in front of every JSON message on a stream. */
export const FRAMED_JSON_PREFIX_BYTES = 4

/** Options for reading one length-prefixed JSON message. */
export interface ReadFramedJsonOptions {
  /**
   * Largest JSON body accepted; a longer length prefix fails before anything is allocated.
   * @default 16384
   */
  maxBytes?: number
  /** Aborts the read (e.g. a header timeout). */
  signal?: AbortSignal
}

/** Defaults for {@link ReadFramedJsonOptions}. */
export const FRAMED_JSON_DEFAULTS = { maxBytes: 16_384 } as const

/** Encodes a value as a 4-byte big-endian length followed by its UTF-8 JSON. */
export function encodeFramedJson (value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8')
  const frame = Buffer.allocUnsafe(FRAMED_JSON_PREFIX_BYTES + body.length)
  frame.writeUInt32BE(body.length, 0)
  body.copy(frame, FRAMED_JSON_PREFIX_BYTES)
  return frame
}

/** Writes one length-prefixed JSON message. */
export function writeFramedJson (stream: Writable, value: unknown): boolean {
  return stream.write(encodeFramedJson(value))
}

/**
 * The callback core of {@link readFramedJson}: calls `done` once with the parsed value (at once, before it
 * returns, when the whole message is already buffered) or with its error. Returns a function that stops
 * waiting without calling `done`.
 */
export function readFramedJsonThen (stream: Readable, maxBytes: number, done: (err: Error | undefined, value: unknown) => void): () => void {
  let stopBody: (() => void) | undefined
  const stopPrefix = readExactlyThen(stream, FRAMED_JSON_PREFIX_BYTES, (err, prefix) => {
    if (err !== undefined) {
      done(err, undefined)
      return
    }
    const length = prefix.readUInt32BE(0)
    if (length > maxBytes) {
      done(new ProtocolError('SLK_ERR_PROTO_HEADER_TOO_LARGE', `peer sent a ${length}-byte header; the limit is ${maxBytes} bytes`), undefined)
      return
    }
    stopBody = readExactlyThen(stream, length, (bodyErr, body) => {
      if (bodyErr !== undefined) {
        done(bodyErr, undefined)
        return
      }
      let value: unknown
      try {
        value = JSON.parse(body.toString('utf8'))
      } catch (parseErr) {
        done(new ProtocolError('SLK_ERR_PROTO_HEADER_INVALID', 'peer sent a header that is not valid JSON', { cause: parseErr }), undefined)
        return
      }
      done(undefined, value)
    })
  })
  return () => {
    stopPrefix()
    stopBody?.()
  }
}

/**
 * Reads one length-prefixed JSON message and leaves the rest of the stream unread.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_TOO_LARGE, SLK_ERR_PROTO_HEADER_INVALID, SLK_ERR_PROTO_CLOSED
 */
export async function readFramedJson (stream: Readable, options: ReadFramedJsonOptions = {}): Promise<unknown> {
  return abortableRead(options.signal, (done) => readFramedJsonThen(stream, options.maxBytes ?? FRAMED_JSON_DEFAULTS.maxBytes, done))
}
