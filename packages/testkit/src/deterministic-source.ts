import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'

/** Bytes in one generated chunk; the largest a {@link deterministicSource} ever pushes. */
export const DETERMINISTIC_CHUNK_BYTES = 64 * 1024
/** Size of the seeded random block that chunks are cut from. */
const BLOCK_BYTES = 1024 * 1024
const CHUNKS_PER_BLOCK = BLOCK_BYTES / DETERMINISTIC_CHUNK_BYTES

const blocks = new Map<number, Uint32Array>()
const expected = new Map<string, string>()

/** mulberry32-style mixer: a cheap, well-spread 32-bit function of its input. */
function mix32 (x: number): number {
  let t = (x + 0x6d2b79f5) | 0
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return (t ^ (t >>> 14)) >>> 0
}

function blockFor (seed: number): Uint32Array {
  let block = blocks.get(seed)
  if (block === undefined) {
    block = new Uint32Array(BLOCK_BYTES / 4)
    let state = mix32(seed ^ 0x9e3779b9)
    for (let i = 0; i < block.length; i++) {
      state = (state + 0x9e3779b9) | 0
      block[i] = mix32(state)
    }
    blocks.set(seed, block)
  }
  return block
}

/**
 * Chunk `index` of the stream for `seed`: one 64 KiB slice of the seed's 1 MiB block, xored with a
 * word derived from the index, so no two chunks are equal (a duplicated or reordered chunk changes
 * the hash) while generating costs one pass over 64 KiB.
 */
function chunkAt (seed: number, index: number): Buffer {
  const block = blockFor(seed)
  const words = DETERMINISTIC_CHUNK_BYTES / 4
  const offset = (index % CHUNKS_PER_BLOCK) * words
  const key = mix32(index ^ mix32(seed))
  const out = new Uint32Array(words)
  for (let i = 0; i < words; i++) out[i] = (block[offset + i] ?? 0) ^ key
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength)
}

function checkArgs (bytes: number, seed: number, fn: string): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`${fn}: bytes must be a non-negative integer, got ${String(bytes)}`)
  if (!Number.isInteger(seed)) throw new RangeError(`${fn}: seed must be an integer, got ${String(seed)}`)
}

/**
 * A Readable that produces exactly `bytes` pseudo-random bytes determined by `seed`, fast enough for
 * GiB-sized transfers, with backpressure (it only generates a chunk when `read()` asks for one).
 * Compare what arrived with {@link expectedSha256}.
 *
 * @throws RangeError on a negative or non-integer size or seed.
 */
export function deterministicSource (bytes: number, seed: number): Readable {
  checkArgs(bytes, seed, 'deterministicSource')
  let index = 0
  let produced = 0
  return new Readable({
    highWaterMark: DETERMINISTIC_CHUNK_BYTES,
    read () {
      if (produced >= bytes) {
        this.push(null)
        return
      }
      const chunk = chunkAt(seed, index)
      index += 1
      const take = Math.min(chunk.length, bytes - produced)
      produced += take
      this.push(take === chunk.length ? chunk : chunk.subarray(0, take))
    },
  })
}

/**
 * The sha256 (lower-case hex) of what `deterministicSource(bytes, seed)` produces, computed without
 * streams and cached per `(bytes, seed)`.
 *
 * @throws RangeError on a negative or non-integer size or seed.
 */
export function expectedSha256 (bytes: number, seed: number): string {
  checkArgs(bytes, seed, 'expectedSha256')
  const cacheKey = `${bytes}:${seed}`
  const cached = expected.get(cacheKey)
  if (cached !== undefined) return cached
  const hash = createHash('sha256')
  let remaining = bytes
  for (let index = 0; remaining > 0; index++) {
    const chunk = chunkAt(seed, index)
    const take = Math.min(chunk.length, remaining)
    hash.update(take === chunk.length ? chunk : chunk.subarray(0, take))
    remaining -= take
  }
  const digest = hash.digest('hex')
  expected.set(cacheKey, digest)
  return digest
}
