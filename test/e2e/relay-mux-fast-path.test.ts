import { createHash } from 'node:crypto'
import { once } from 'node:events'
import type net from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { deterministicSource, expectedSha256, hashStream, socketPair, waitFor } from '@spokelink/testkit'
import { createMuxSession, relay } from '@spokelink/protocol'
import type { MuxSession, MuxStream } from '@spokelink/protocol'

const MiB = 1024 * 1024
const KiB = 1024
/** The spec's initial stream window; auto-tuning is off, so it stays the bound. */
const WINDOW = 256 * KiB

/**
 * writer ⇄ [client session ⇄ server session] ⇄ relay ⇄ socket `b` ⇄ socket `c`: the server's end of the
 * writer's stream is relayed to a real TCP socket, as the exit-node relays a stream to its data-plane client
 * and the agent to its upstream. With `streamToSocketDirect` (the exit-node's data-plane streams) relay() takes
 * its fast path mux → socket; socket → mux is the stream's Writable either way.
 */
async function relayedStream (windowBytes = WINDOW): Promise<{ client: MuxSession, server: MuxSession, writer: MuxStream, reader: MuxStream, b: net.Socket, c: net.Socket, x: net.Socket, y: net.Socket, done: Promise<Error | undefined> }> {
  const [x, y] = await socketPair()
  const options = { keepaliveIntervalMs: 0, windowAutoTuning: false, initialStreamWindowBytes: windowBytes, maxStreamWindowBytes: windowBytes }
  const client = createMuxSession(x, 'client', options)
  const server = createMuxSession(y, 'server', options)
  const [b, c] = await socketPair({ allowHalfOpen: true })
  onTestFinished(async () => {
    b.destroy()
    c.destroy()
    await Promise.all([client.close({ graceMs: 100 }), server.close({ graceMs: 100 })])
  })
  const accepted = new Promise<MuxStream>((resolve) => { server.once('stream', resolve) })
  // Its SYN goes out at once: the relay starts before any data arrives.
  const writer = client.openStream()
  const reader = await accepted
  // A test that fails resets the stream from the relay's side when it cleans up.
  writer.on('error', () => {})
  return { client, server, writer, reader, b, c, x, y, done: relay(reader, b, { streamToSocketDirect: true }) }
}

/** Lets the event loop turn `turns` times: long enough for anything not blocked to move. */
async function turns (count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => { setImmediate(resolve) })
}

/** Waits until `value()` stays the same over 100 turns of the event loop (the kernel's socket buffers grow for a while). */
async function settled (value: () => number, sample: () => void): Promise<number> {
  let last = value()
  await waitFor(async () => {
    for (let i = 0; i < 100; i++) {
      await turns(1)
      sample()
    }
    const now = value()
    const same = now === last
    last = now
    return same
  }, { what: 'the sender to stay stopped' })
  return last
}

describe('relay between a mux stream and a socket (streamToSocketDirect)', () => {
  test('mux → socket: a stalled socket holds the stream at its window and the socket at one piece above its high-water mark; resuming delivers sha256-exact bytes', async () => {
    // A window larger than what the kernel takes after a 'drain', so pieces still wait after one: their credit
    // must stay held then too.
    const window = 16 * MiB
    const { client, server, writer, reader, b, c, done } = await relayedStream(window)
    c.pause()
    // Four times the window, so a relay that buffered everything would fail the bounds.
    const total = 64 * MiB
    deterministicSource(total, 5).pipe(writer)
    let peakSocketBuffer = 0
    let peakHeld = 0
    const sample = (): void => {
      peakSocketBuffer = Math.max(peakSocketBuffer, b.writableLength)
      // Bytes the writer sent that the socket has not taken: the stream may hold at most its window of them.
      peakHeld = Math.max(peakHeld, client.stats.bytesOut - b.bytesWritten)
    }
    await waitFor(() => {
      sample()
      return writer.writableNeedDrain && reader.bufferedBytes > 0 && b.writableNeedDrain
    }, { what: 'the socket to block and the writer to stall', intervalMs: 0 })
    const stalledAt = await settled(() => client.stats.bytesOut, sample)
    await turns(200)
    sample()
    // The sender stays stopped: no credit came back for pieces the socket did not take.
    expect(client.stats.bytesOut).toBe(stalledAt)
    expect(client.stats.windowStalls).toBeGreaterThan(0)
    expect(reader.bufferedBytes).toBeGreaterThan(0)
    expect(reader.bufferedBytes).toBeLessThanOrEqual(window)
    expect(server.stats.bufferedBytes).toBe(reader.bufferedBytes)
    // The waiting pieces are the fast path's, not the Readable's.
    expect(reader.readableLength).toBe(0)
    expect(peakHeld).toBeLessThanOrEqual(window)
    expect(peakSocketBuffer).toBeLessThanOrEqual(b.writableHighWaterMark + 64 * KiB)

    // Now a slow reader: the socket drains and blocks again many times, and the bounds must hold throughout.
    let sampling = true
    const sampler = (): void => {
      sample()
      if (sampling) setImmediate(sampler)
    }
    sampler()
    // 16 KiB per turn: the kernel's buffers stay nearly full, so each 'drain' finds room for a piece or two only.
    const hash = createHash('sha256')
    let bytes = 0
    let ended = false
    const end = once(c, 'end').then(() => { ended = true })
    for (;;) {
      const chunk = c.read(16 * KiB) as Buffer | null
      if (chunk !== null) {
        hash.update(chunk)
        bytes += chunk.length
        await turns(1)
      } else if (ended) {
        break
      } else {
        await Promise.race([once(c, 'readable'), end])
      }
    }
    sampling = false
    expect({ sha256: hash.digest('hex'), bytes }).toEqual({ sha256: expectedSha256(total, 5), bytes: total })
    expect(peakHeld).toBeLessThanOrEqual(window)
    expect(peakSocketBuffer).toBeLessThanOrEqual(b.writableHighWaterMark + 64 * KiB)
    expect(server.stats.bufferedBytes).toBe(0)
    // c saw the end; its own end is the other half-close, which the writer's stream reads as its end.
    c.end()
    writer.resume()
    expect(await done).toBeUndefined()
  })

  test('mux → socket: a FIN that arrives while pieces wait for the socket ends it after them, in order', async () => {
    const { writer, reader, b, c, done } = await relayedStream()
    c.pause()
    // Fill the socket before the stream's bytes come, so its first piece finds write() returning false.
    const filler = Buffer.alloc(4 * MiB, 0x2a)
    b.write(filler)
    await waitFor(() => b.writableNeedDrain, { what: 'the socket to push back' })
    const body = 200 * KiB
    const payload = Buffer.alloc(body)
    for (let i = 0; i < body; i++) payload[i] = (i * 31) & 0xff
    for (let at = 0; at < body; at += 16 * KiB) writer.write(payload.subarray(at, at + 16 * KiB))
    writer.end()
    // The FIN came with the last piece while pieces still wait: the readable side has not ended.
    // No credit goes back while the socket is blocked, so what the window lost is what arrived.
    await waitFor(() => WINDOW - reader.receiveAvailableBytes === body && writer.writableFinished, { what: 'the body to reach the stream', intervalMs: 0 })
    await turns(50)
    expect(reader.bufferedBytes).toBeGreaterThan(0)
    expect(reader.readableEnded).toBe(false)
    expect(b.writableEnded).toBe(false)
    const chunks: Buffer[] = []
    c.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    c.resume()
    await once(c, 'end')
    const all = Buffer.concat(chunks)
    expect(all.length).toBe(filler.length + body)
    expect(all.subarray(0, filler.length).equals(filler)).toBe(true)
    expect(all.subarray(filler.length).equals(payload)).toBe(true)
    c.end()
    writer.resume()
    expect(await done).toBeUndefined()
  })

  test('mux → socket: a reset while pieces wait destroys the socket, fails the relay and releases the held bytes', async () => {
    const { server, writer, reader, b, c, done } = await relayedStream()
    c.pause()
    c.on('error', () => { /* the reset reaches c as ECONNRESET or an end, either is fine */ })
    deterministicSource(16 * MiB, 6).pipe(writer)
    await waitFor(() => writer.writableNeedDrain && reader.bufferedBytes > 0 && reader.readableLength === 0, { what: 'pieces waiting for the socket', intervalMs: 0 })
    expect(server.stats.bufferedBytes).toBeGreaterThan(0)
    writer.destroy()
    expect(await done).toMatchObject({ code: 'SLK_ERR_MUX_STREAM_RESET' })
    expect(b.destroyed).toBe(true)
    expect(reader.bufferedBytes).toBe(0)
    expect(server.stats.bufferedBytes).toBe(0)
  })

  test('socket → mux: a peer that stops reading stops the socket reader at the window; resuming delivers sha256-exact bytes', async () => {
    const { client, server, writer, b, c, done } = await relayedStream()
    // The opener is the reader here: its stream's data comes from c through the relay's socket → stream path.
    writer.pause()
    const total = 64 * MiB
    deterministicSource(total, 7).pipe(c)
    let peakHeld = 0
    await waitFor(() => {
      peakHeld = Math.max(peakHeld, writer.bufferedBytes)
      return server.stats.windowStalls > 0 && b.isPaused()
    }, { what: 'the stream to run out of window and the relay to pause the socket', intervalMs: 0 })
    await turns(200)
    const stoppedAt = server.stats.bytesOut
    await turns(200)
    expect(server.stats.bytesOut).toBe(stoppedAt)
    expect(server.stats.bytesOut).toBeLessThanOrEqual(WINDOW)
    expect(writer.bufferedBytes).toBeLessThanOrEqual(WINDOW)
    expect(client.stats.bufferedBytes).toBeLessThanOrEqual(WINDOW)
    expect(peakHeld).toBeLessThanOrEqual(WINDOW)
    const received = hashStream(writer.iterator({ destroyOnReturn: false }))
    expect(await received).toEqual({ sha256: expectedSha256(total, 7), bytes: total })
    writer.end()
    c.resume()
    expect(await done).toBeUndefined()
  })

  test('socket → mux: a transport that pushes back stops the socket reader at the session\'s queue, not at the window', async () => {
    // A window far above the session's outbound queue (4 × maxDataFrameBytes), so only the queue can stop it.
    const { server, writer, b, c, x, y, done } = await relayedStream(16 * MiB)
    // The client session stops reading its transport: the server's writes to it soon return false.
    x.pause()
    const total = 64 * MiB
    deterministicSource(total, 8).pipe(c)
    let peakQueued = 0
    const sample = (): void => {
      // DATA the stream handed its session that the transport has not taken (frame headers make y's count a little larger).
      peakQueued = Math.max(peakQueued, server.stats.bytesOut - y.bytesWritten)
    }
    await waitFor(() => {
      sample()
      return y.writableNeedDrain && b.isPaused()
    }, { what: 'the transport to push back and the relay to pause the socket', intervalMs: 0 })
    await settled(() => server.stats.bytesOut, sample)
    expect(server.stats.bytesOut).toBeLessThan(16 * MiB)
    expect(peakQueued).toBeLessThanOrEqual(4 * 256 * KiB + 64 * KiB)
    x.resume()
    const received = hashStream(writer.iterator({ destroyOnReturn: false }))
    expect(await received).toEqual({ sha256: expectedSha256(total, 8), bytes: total })
    writer.end()
    c.resume()
    expect(await done).toBeUndefined()
  })
})
