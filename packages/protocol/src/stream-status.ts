import type { Readable, Writable } from 'node:stream'
import { ProtocolError } from './errors.js'
import { readFramedJson, encodeFramedJson } from './framed-json.js'
import { STREAM_STATUS, printableValue } from './messages.js'
import type { StreamStatus } from './messages.js'
import { readExactly } from './read-exactly.js'

const REASON_MAX_BYTES = 1024

/** Writes the agent's status byte; a refusal is followed by a length-prefixed `{reason}`. */
export function writeStreamStatus (stream: Writable, status: StreamStatus, reason?: string): void {
  if (status === STREAM_STATUS.OK) {
    stream.write(Buffer.of(status))
    return
  }
  stream.write(Buffer.concat([Buffer.of(status), encodeFramedJson({ reason: reason ?? 'refused' })]))
}

/**
 * Reads the agent's answer to a stream header.
 * @throws ProtocolError SLK_ERR_PROTO_UPSTREAM_REFUSED with the agent's reason, SLK_ERR_PROTO_CLOSED
 */
export async function readStreamStatus (stream: Readable, options: { signal?: AbortSignal } = {}): Promise<void> {
  const [status] = await readExactly(stream, 1, options)
  if (status === STREAM_STATUS.OK) return
  const body = await readFramedJson(stream, { ...options, maxBytes: REASON_MAX_BYTES })
  const reason = typeof body === 'object' && body !== null && 'reason' in body ? printableValue(body.reason) : 'no reason given'
  throw new ProtocolError('SLK_ERR_PROTO_UPSTREAM_REFUSED', `agent refused the stream: ${reason}`)
}
