import type { Readable, Writable } from 'node:stream'
import { ProtocolError } from './errors.js'
import { readExactly } from './read-exactly.js'

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
 * Reads one length-prefixed JSON message and leaves the rest of the stream unread.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_TOO_LARGE, SLK_ERR_PROTO_HEADER_INVALID, SLK_ERR_PROTO_CLOSED
 */
export async function readFramedJson (stream: Readable, options: ReadFramedJsonOptions = {}): Promise<unknown> {
  const maxBytes = options.maxBytes ?? FRAMED_JSON_DEFAULTS.maxBytes
  const prefix = await readExactly(stream, FRAMED_JSON_PREFIX_BYTES, options)
  const length = prefix.readUInt32BE(0)
  if (length > maxBytes) {
    throw new ProtocolError('SLK_ERR_PROTO_HEADER_TOO_LARGE', `peer sent a ${length}-byte header; the limit is ${maxBytes} bytes`)
  }
  const body = await readExactly(stream, length, options)
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new ProtocolError('SLK_ERR_PROTO_HEADER_INVALID', 'peer sent a header that is not valid JSON', { cause: err })
  }
}
