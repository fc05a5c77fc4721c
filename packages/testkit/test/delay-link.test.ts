import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { createDelayLink } from '../src/delay-link.js'
import { createManualClock } from '../src/manual-clock.js'
import { waitFor as waitUntil } from '../src/wait-for.js'
import type { DelayLink, DelayLinkOptions } from '../src/delay-link.js'

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** Collects a socket's bytes until its FIN; rejects if it closes without one. */
async function readToEnd (socket: Socket): Promise<{ bytes: number, sha256: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  socket.on('data', (chunk: Buffer) => {
    hash.update(chunk)
    bytes += chunk.length
  })
  await once(socket, 'end', { signal: AbortSignal.timeout(60_000) })
  return { bytes, sha256: hash.digest('hex') }
}

async function startTarget (onConnection: (socket: Socket) => void): Promise<Server> {
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket)
    onConnection(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => { resolve() }))
    for (const socket of sockets) socket.destroy()
    await closed
  })
  return server
}

async function startLink (target: Server, options: Omit<DelayLinkOptions, 'target'>): Promise<DelayLink> {
  const { port } = target.address() as AddressInfo
  const link = await createDelayLink({ target: { host: '127.0.0.1', port }, ...options })
  onTestFinished(async () => { await link.close() })
  return link
}

async function dial (link: DelayLink): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port: link.port, allowHalfOpen: true, noDelay: true })
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect', { signal: AbortSignal.timeout(10_000) })
  return socket
}

/** Resolves with the socket's `hadError` once it has closed (events.once would reject on its 'error'). */
async function closed (socket: Socket, timeoutMs = 10_000): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`socket not closed within ${timeoutMs} ms`)) }, timeoutMs)
    socket.once('close', (hadError: boolean) => {
      clearTimeout(timer)
      resolve(hadError)
    })
  })
}

async function waitFor (check: () => boolean, what: string): Promise<void> {
  await waitUntil(check, { what, timeoutMs: 20_000, intervalMs: 1 })
}

describe('createDelayLink', () => {
  test('relays every byte both ways, and a half-close lets the other side keep sending', async () => {
    const up = randomBytes(16 * 1024 * 1024 + 13)
    const down = randomBytes(16 * 1024 * 1024 + 7)
    let serverGot: Promise<{ bytes: number, sha256: string }> | undefined
    const target = await startTarget((socket) => {
      serverGot = readToEnd(socket).then((got) => {
        // Only after the client's FIN: the reverse direction still works.
        socket.end(down)
        return got
      })
    })
    const link = await startLink(target, { oneWayDelayMs: 2 })
    const client = await dial(link)
    const clientGot = readToEnd(client)
    client.end(up)

    const received = await clientGot
    await waitFor(() => serverGot !== undefined, 'the target to accept')
    expect(await serverGot).toEqual({ bytes: up.length, sha256: sha256(up) })
    expect(received).toEqual({ bytes: down.length, sha256: sha256(down) })
    await once(client, 'close', { signal: AbortSignal.timeout(10_000) })
    expect(link.stats.bytesForwarded).toBe(up.length + down.length)
    expect(link.stats.inFlightBytes).toBe(0)
  })

  test('holds each chunk for the one-way delay in each direction, on its clock', async () => {
    const oneWayDelayMs = 20
    const clock = createManualClock()
    const target = await startTarget((socket) => { socket.pipe(socket) })
    const link = await startLink(target, { oneWayDelayMs, clock })
    const client = await dial(link)
    const received: Buffer[] = []
    client.on('data', (chunk: Buffer) => received.push(chunk))
    for (let i = 0; i < 3; i++) {
      const forwarded = link.stats.bytesForwarded
      client.write(Buffer.from([i]))
      // Client → target: held until the clock has moved the full delay, released the moment it has.
      await waitFor(() => link.stats.inFlightBytes === 1, 'the byte to reach the link')
      clock.advance(oneWayDelayMs - 1)
      expect(link.stats.bytesForwarded).toBe(forwarded)
      clock.advance(1)
      expect(link.stats.bytesForwarded).toBe(forwarded + 1)
      // Target → client: the echo is held the same way; the client cannot have it before the release.
      await waitFor(() => link.stats.inFlightBytes === 1, 'the echo to reach the link')
      clock.advance(oneWayDelayMs - 1)
      expect(link.stats.bytesForwarded).toBe(forwarded + 1)
      expect(Buffer.concat(received)).toEqual(Buffer.from(Array.from({ length: i }, (_, j) => j)))
      clock.advance(1)
      expect(link.stats.bytesForwarded).toBe(forwarded + 2)
      await waitFor(() => Buffer.concat(received).length === i + 1, 'the echo at the client')
      expect(Buffer.concat(received)).toEqual(Buffer.from(Array.from({ length: i + 1 }, (_, j) => j)))
    }
    expect(clock.pendingTimers).toBe(0)
  })

  test('caps the bytes held per direction and pushes backpressure to the sender', async () => {
    // 12.5 MiB/s × 2 × 10 ms = 256 KiB may be held per direction.
    const capBytes = 256 * 1024
    let accepted: Socket | undefined
    const target = await startTarget((socket) => {
      socket.pause() // a stalled reader
      accepted = socket
    })
    const link = await startLink(target, { oneWayDelayMs: 10, bandwidthBytesPerSec: 13_107_200 })
    expect(link.stats.maxInFlightBytes).toBe(capBytes)
    const client = await dial(link)
    const data = randomBytes(32 * 1024 * 1024)
    client.end(data)

    await waitFor(() => link.stats.sourcePauses > 0 && link.stats.inFlightBytes >= capBytes, 'the relay to fill up to its cap and pause the sender')
    await waitFor(() => accepted !== undefined, 'the target to accept')
    // Kernel socket buffers absorb a few MiB at most; the rest waits in the sender.
    expect(client.writableLength).toBeGreaterThan(0)

    const sink = accepted
    if (sink === undefined) throw new Error('unreachable: waited for accept above')
    const got = readToEnd(sink)
    sink.resume()
    expect(await got).toEqual({ bytes: data.length, sha256: sha256(data) })
    // One socket read (≤ 64 KiB) may land after the cap is reached, never more.
    expect(link.stats.peakInFlightBytes).toBeGreaterThanOrEqual(capBytes)
    expect(link.stats.peakInFlightBytes).toBeLessThanOrEqual(capBytes + 64 * 1024)
  })

  test('a destroyed connection takes its partner down, and close() ends the rest', async () => {
    const accepted: Socket[] = []
    const target = await startTarget((socket) => {
      socket.on('error', () => {}) // the reset arrives as ECONNRESET
      accepted.push(socket)
    })
    const link = await startLink(target, { oneWayDelayMs: 5 })
    const first = await dial(link)
    await waitFor(() => accepted.length === 1, 'the first connection to reach the target')
    const [upstream] = accepted
    if (upstream === undefined) throw new Error('unreachable: waited for accept above')
    const upstreamClosed = closed(upstream)
    first.resetAndDestroy()
    expect(await upstreamClosed).toBe(true) // reset, not a clean FIN

    const second = await dial(link)
    second.on('error', () => {})
    await waitFor(() => accepted.length === 2, 'the second connection to reach the target')
    second.resume()
    const secondEnded = once(second, 'end', { signal: AbortSignal.timeout(10_000) })
    await link.close()
    await secondEnded
    expect(link.stats.connections).toBe(2)
  })
})
