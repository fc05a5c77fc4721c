import { createHash } from 'node:crypto'
import type { BinaryLike } from 'node:crypto'

/** Result of {@link hashStream}. */
export interface StreamHash {
  /** Lower-case hex sha256 of every byte read. */
  sha256: string
  /** Number of bytes read. */
  bytes: number
}

/** Lower-case hex sha256 of `data` (strings are hashed as UTF-8). */
export function sha256Hex (data: BinaryLike): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * Reads `readable` to its end and resolves with the sha256 and length of what it produced.
 * Strings chunks are hashed as UTF-8.
 *
 * @throws the stream's error if it fails or is destroyed with one.
 */
export async function hashStream (readable: AsyncIterable<unknown>): Promise<StreamHash> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of readable) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk instanceof Uint8Array ? chunk : undefined
    if (buf === undefined) throw new TypeError(`hashStream: expected Buffer, Uint8Array or string chunks, got ${typeof chunk}`)
    hash.update(buf)
    bytes += buf.byteLength
  }
  return { sha256: hash.digest('hex'), bytes }
}
