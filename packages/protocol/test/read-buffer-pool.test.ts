import { createHash } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { deterministicSource, expectedSha256, sha256Hex, waitFor } from '@spokelink/testkit'
import { MuxError, READ_BUFFER_POOL_DEFAULTS, ReadBufferPool, createMuxSession, createWebSocketDuplex, relay, releaseWritten, sharedReadBufferPool } from '../src/index.js'
import type { MuxStream } from '../src/index.js'

const KiB = 1024
const MiB = 1024 * KiB

/** A TCP server that sends `bytes` of the deterministic stream `seed` on every connection, then half-closes. */
async function sourceServer (bytes: number, seed: number): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {})
    deterministicSource(bytes, seed).pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(async () => { await new Promise((resolve) => { server.close(resolve) }) })
  return (server.address() as AddressInfo).port
}

/** Connects a pool socket to `port` and collects every chunk it reads, unreleased. */
async function readAll (pool: ReadBufferPool, port: number): Promise<Buffer[]> {
  const socket = pool.connect({ host: '127.0.0.1', port })
  onTestFinished(() => { socket.destroy() })
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  await once(socket, 'close')
  return chunks
}

async function wsPair (): Promise<{ client: WebSocket, server: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  await once(wss, 'listening')
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false })
  const [server] = await accepted
  await once(client, 'open')
  onTestFinished(async () => {
    client.terminate()
    server.terminate()
    await new Promise((resolve) => { wss.close(resolve) })
  })
  return { client, server }
}

describe('ReadBufferPool', () => {
  test('rejects a read buffer size or pool count that is not an integer in range', () => {
    for (const options of [{ readBufferBytes: 0 }, { readBufferBytes: 1.5 }, { maxPooledReadBuffers: -1 }, { maxPooledReadBuffers: 2.5 }]) {
      expect(() => new ReadBufferPool(options)).toThrow(MuxError)
    }
    expect(() => new ReadBufferPool({ maxPooledReadBuffers: 0 })).not.toThrow()
    const pool = new ReadBufferPool()
    expect([pool.readBufferBytes, pool.maxPooledReadBuffers]).toEqual([READ_BUFFER_POOL_DEFAULTS.readBufferBytes, READ_BUFFER_POOL_DEFAULTS.maxPooledReadBuffers])
  })

  test('sharedReadBufferPool is one pool with the default sizes for the whole process', () => {
    const pool = sharedReadBufferPool()
    expect(sharedReadBufferPool()).toBe(pool)
    expect([pool.readBufferBytes, pool.maxPooledReadBuffers]).toEqual([READ_BUFFER_POOL_DEFAULTS.readBufferBytes, READ_BUFFER_POOL_DEFAULTS.maxPooledReadBuffers])
  })

  test('reads the bytes exactly, each read at most readBufferBytes, and allocates while no buffer came back', async () => {
    const port = await sourceServer(256 * KiB, 3)
    const pool = new ReadBufferPool({ readBufferBytes: 4 * KiB, maxPooledReadBuffers: 2 })
    const chunks = await readAll(pool, port)
    expect({ sha256: sha256Hex(Buffer.concat(chunks)), bytes: Buffer.concat(chunks).length }).toEqual({ sha256: expectedSha256(256 * KiB, 3), bytes: 256 * KiB })
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(4 * KiB)
    // Nothing was released, so every read had a buffer of its own (plus the one armed at close, returned then).
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length)
    expect(pool.reusedCount).toBe(0)
    expect(pool.freeCount).toBe(1)
  })

  test('keeps at most maxPooledReadBuffers free; the next socket reads into those before it allocates', async () => {
    const port = await sourceServer(64 * KiB, 4)
    const pool = new ReadBufferPool({ readBufferBytes: 4 * KiB, maxPooledReadBuffers: 3 })
    const first = await readAll(pool, port)
    expect(first.length).toBeGreaterThan(3)
    for (const chunk of first) releaseWritten(chunk)
    expect(pool.freeCount).toBe(3)
    const allocated = pool.allocatedCount
    const second = await readAll(pool, port)
    expect({ sha256: sha256Hex(Buffer.concat(second)), bytes: Buffer.concat(second).length }).toEqual({ sha256: expectedSha256(64 * KiB, 4), bytes: 64 * KiB })
    // The three free buffers were reused (the first armed right at connect), the rest allocated.
    expect(pool.reusedCount).toBe(3)
    expect(pool.allocatedCount - allocated).toBe(second.length + 1 - 3)
  })

  test('with maxPooledReadBuffers 0 nothing is kept: every read allocates', async () => {
    const port = await sourceServer(32 * KiB, 5)
    const pool = new ReadBufferPool({ readBufferBytes: 4 * KiB, maxPooledReadBuffers: 0 })
    for (const chunk of await readAll(pool, port)) releaseWritten(chunk)
    expect(pool.freeCount).toBe(0)
    await readAll(pool, port)
    expect(pool.reusedCount).toBe(0)
  })

  test('a buffer goes back only once every byte read into it was reported written, in whatever pieces', async () => {
    const port = await sourceServer(4 * KiB, 6)
    const pool = new ReadBufferPool({ readBufferBytes: 64 * KiB, maxPooledReadBuffers: 4 })
    const [chunk, ...rest] = await readAll(pool, port)
    expect(rest).toEqual([])
    if (chunk === undefined) throw new Error('no read')
    const free = pool.freeCount
    releaseWritten(chunk.subarray(0, 1000))
    releaseWritten(Buffer.from(chunk))
    expect(pool.freeCount).toBe(free)
    releaseWritten(chunk.subarray(1000, chunk.length - 1))
    expect(pool.freeCount).toBe(free)
    releaseWritten(chunk.subarray(chunk.length - 1))
    expect(pool.freeCount).toBe(free + 1)
    // Reported again (a bug elsewhere): the free buffer is not counted twice.
    releaseWritten(chunk)
    expect(pool.freeCount).toBe(free + 1)
  })

  test('over a duplex without releaseWrittenChunks no buffer comes back: every read allocates, the bytes still arrive exactly', async () => {
    const total = 8 * MiB
    const port = await sourceServer(total, 8)
    const { client, server } = await wsPair()
    const agent = createMuxSession(createWebSocketDuplex(client), 'client', { keepaliveIntervalMs: 0 })
    const exitNode = createMuxSession(createWebSocketDuplex(server), 'server', { keepaliveIntervalMs: 0 })
    onTestFinished(async () => { await Promise.all([agent.close(), exitNode.close()]) })
    const pool = new ReadBufferPool()
    agent.once('stream', (stream: MuxStream) => { void relay(stream, pool.connect({ host: '127.0.0.1', port, allowHalfOpen: true })) })
    const stream = exitNode.openStream()
    stream.end()
    const hash = createHash('sha256')
    let received = 0
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      received += chunk.length
    })
    await once(stream, 'end')
    expect({ sha256: hash.digest('hex'), bytes: received }).toEqual({ sha256: expectedSha256(total, 8), bytes: total })
    expect(pool.reusedCount).toBe(0)
  })

  test('64 MiB read into pool buffers crosses a mux over a WebSocket whose reader keeps stalling, sha256-exact', async () => {
    const total = 64 * MiB
    const port = await sourceServer(total, 7)
    const { client, server } = await wsPair()
    // The exit-node grants a 16 MiB window at once, so a stalled reader leaves the agent's writes queued in its socket.
    const agentTransport = createWebSocketDuplex(client, { releaseWrittenChunks: true })
    const agent = createMuxSession(agentTransport, 'client', { keepaliveIntervalMs: 0 })
    const exitNode = createMuxSession(createWebSocketDuplex(server), 'server', { keepaliveIntervalMs: 0, initialStreamWindowBytes: 16 * MiB })
    onTestFinished(async () => { await Promise.all([agent.close(), exitNode.close()]) })
    const pool = new ReadBufferPool()
    const relayed = new Promise<Error | undefined>((resolve) => {
      agent.once('stream', (stream: MuxStream) => {
        resolve(relay(stream, pool.connect({ host: '127.0.0.1', port, allowHalfOpen: true })))
      })
    })
    const stream = exitNode.openStream()
    stream.end()
    let received = 0
    const hash = createHash('sha256')
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      received += chunk.length
    })
    const arrived = once(stream, 'end').then(() => ({ sha256: hash.digest('hex'), bytes: received }))
    // Stall the exit-node's socket every 8 MiB until the agent holds queued writes whose buffers a
    // premature release would hand to the next upstream read.
    let stalls = 0
    for (let at = 8 * MiB; at < total - 8 * MiB; at += 8 * MiB) {
      await waitFor(() => received >= at, { timeoutMs: 30_000, what: `${at} bytes through` })
      server.pause()
      // A batch in the socket that has not completed, and more waiting behind it.
      await waitFor(() => client.bufferedAmount > 0 && agentTransport.writableLength > 0, { timeoutMs: 30_000, what: 'the agent to queue writes behind the stalled reader' })
      stalls++
      server.resume()
    }
    expect(await arrived).toEqual({ sha256: expectedSha256(total, 7), bytes: total })
    expect(await relayed).toBeUndefined()
    expect(stalls).toBe(6)
    // Buffers did come back and were read into again: the pool, not fresh allocations, carried the stream.
    expect(pool.reusedCount).toBeGreaterThan(pool.allocatedCount * 10)
  })
})
