import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import type { Socket } from 'node:net'
import { pipeline } from 'node:stream/promises'
import { describe, expect, onTestFinished, test } from 'vitest'
import { DETERMINISTIC_CHUNK_BYTES, deterministicSource, expectedSha256, hashStream, listenLoopback, sha256Hex } from '@spokelink/testkit'

const MiB = 1024 * 1024

describe('deterministicSource', () => {
  test.each([0, 1, 4095, DETERMINISTIC_CHUNK_BYTES, DETERMINISTIC_CHUNK_BYTES + 1, 3 * MiB + 17])('streams %i bytes whose hash expectedSha256 predicts', async (bytes) => {
    const result = await hashStream(deterministicSource(bytes, 7))
    expect(result).toEqual({ sha256: expectedSha256(bytes, 7), bytes })
  })

  test('is a pure function of (bytes, seed), and a shorter stream is a prefix of a longer one', async () => {
    const collect = async (bytes: number, seed: number): Promise<Buffer> => {
      const chunks: Buffer[] = []
      for await (const chunk of deterministicSource(bytes, seed)) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks)
    }
    const long = await collect(2 * MiB + 5, 1)
    expect((await collect(2 * MiB + 5, 1)).equals(long)).toBe(true)
    expect((await collect(100_000, 1)).equals(long.subarray(0, 100_000))).toBe(true)
    expect((await collect(2 * MiB + 5, 2)).equals(long)).toBe(false)
    expect(sha256Hex(long)).toBe(expectedSha256(2 * MiB + 5, 1))
  })

  test('never repeats a chunk, even across the 1 MiB block it is cut from', async () => {
    const seen = new Set<string>()
    let count = 0
    for await (const chunk of deterministicSource(4 * MiB, 3)) {
      seen.add(sha256Hex(chunk as Buffer))
      count += 1
    }
    expect(count).toBe((4 * MiB) / DETERMINISTIC_CHUNK_BYTES)
    expect(seen.size).toBe(count)
  })

  test('only generates what the reader asks for (backpressure)', async () => {
    const source = deterministicSource(1024 * MiB, 9)
    source.pause()
    source.read(0)
    await new Promise((resolve) => setImmediate(resolve))
    expect(source.readableLength).toBeLessThanOrEqual(source.readableHighWaterMark)
    source.destroy()
  })

  test('arrives intact through a real TCP connection', async () => {
    const bytes = 64 * MiB
    const sockets = new Set<Socket>()
    let resolveReceived: (hash: { sha256: string, bytes: number }) => void = () => {}
    let rejectReceived: (err: unknown) => void = () => {}
    const received = new Promise<{ sha256: string, bytes: number }>((resolve, reject) => {
      resolveReceived = resolve
      rejectReceived = reject
    })
    const server = createServer((socket) => {
      sockets.add(socket)
      hashStream(socket).then(resolveReceived, rejectReceived)
    })
    onTestFinished(() => {
      for (const socket of sockets) socket.destroy()
      server.close()
    })
    const port = await listenLoopback(server)
    const client = createConnection({ port, host: '127.0.0.1' })
    await once(client, 'connect')
    await pipeline(deterministicSource(bytes, 42), client)
    await expect(received).resolves.toEqual({ sha256: expectedSha256(bytes, 42), bytes })
  })

  test('rejects nonsense sizes', () => {
    expect(() => deterministicSource(-1, 0)).toThrow(RangeError)
    expect(() => expectedSha256(1.5, 0)).toThrow(RangeError)
  })
})
