import type net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { describe, expect, onTestFinished, test } from 'vitest'
import { delayedSocketPair, socketPair, waitFor } from '@spokelink/testkit'
import { createMuxSession } from '../src/index.js'
import type { MuxSession, MuxSessionOptions, MuxStream } from '../src/index.js'

const MiB = 1024 * 1024

/** Both ends of a loopback connection through testkit's delay link (an emulated long link), closed when the test finishes. */
async function delayedLink (oneWayDelayMs: number): Promise<[net.Socket, net.Socket]> {
  const pair = await delayedSocketPair({ oneWayDelayMs })
  onTestFinished(async () => { await pair.close() })
  return pair.sockets
}

async function sessions (options: MuxSessionOptions = {}, link?: [net.Socket, net.Socket]): Promise<{ client: MuxSession, server: MuxSession }> {
  const [a, b] = link ?? await socketPair()
  const client = createMuxSession(a, 'client', { keepaliveIntervalMs: 0, ...options })
  const server = createMuxSession(b, 'server', { keepaliveIntervalMs: 0, ...options })
  onTestFinished(async () => {
    await Promise.all([client.close({ graceMs: 100 }), server.close({ graceMs: 100 })])
  })
  return { client, server }
}

/** Deterministic, non-repeating-looking bytes: a random block read at a stream-specific stride. */
function source (seed: number, totalBytes: number, chunkBytes = 64 * 1024): { chunks: () => Generator<Buffer>, block: Buffer } {
  const block = randomBytes(MiB + chunkBytes)
  return {
    block,
    * chunks () {
      for (let sent = 0, i = 0; sent < totalBytes; i++) {
        const n = Math.min(chunkBytes, totalBytes - sent)
        const at = ((i * 7919 + seed * 104_729) * 61) % MiB
        yield block.subarray(at, at + n)
        sent += n
      }
    },
  }
}

async function send (stream: MuxStream, chunks: Iterable<Buffer>): Promise<string> {
  const hash = createHash('sha256')
  for (const chunk of chunks) {
    hash.update(chunk)
    if (!stream.write(chunk)) await once(stream, 'drain')
  }
  stream.end()
  return hash.digest('hex')
}

async function receive (stream: MuxStream): Promise<{ sha: string, bytes: number }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return { sha: hash.digest('hex'), bytes }
}

describe('MuxSession ↔ MuxSession over loopback TCP', () => {
  // 64 MiB: hundreds of window updates and the whole credit cycle, with the window grown to its cap; the 1 GiB
  // run at scale is the tunnel's e2e test, through this same mux.
  test('64 MiB through one stream arrives sha256-exact', async () => {
    const { client, server } = await sessions()
    const received = new Promise<{ sha: string, bytes: number }>((resolve, reject) => {
      server.once('stream', (s: MuxStream) => { receive(s).then(resolve, reject); s.end() })
    })
    const stream = client.openStream()
    stream.resume()
    const sent = await send(stream, source(1, 64 * MiB).chunks())
    const got = await received
    expect(got).toEqual({ sha: sent, bytes: 64 * MiB })
    expect(client.stats.bytesOut).toBe(64 * MiB)
    expect(server.stats.bytesIn).toBe(64 * MiB)
    await waitFor(() => client.stats.streamsOpen === 0 && server.stats.streamsOpen === 0, { what: 'both maps empty' })
  })

  test('with ackDelayMs and a 4 MiB initial window, a reader that never writes ACKs with its first credit; 64 MiB arrive sha256-exact', async () => {
    const { client, server } = await sessions({ ackDelayMs: 60_000, initialStreamWindowBytes: 4 * MiB, windowAutoTuning: false })
    const received = new Promise<{ sha: string, bytes: number }>((resolve, reject) => {
      // The reader writes nothing until it is done, so its ACK can only ride with its first credit.
      server.once('stream', (s: MuxStream) => { receive(s).then((got) => { s.end(); resolve(got) }, reject) })
    })
    const stream = client.openStream()
    stream.resume()
    const sent = await send(stream, source(3, 64 * MiB).chunks())
    expect(await received).toEqual({ sha: sent, bytes: 64 * MiB })
    expect(client.stats.windowStalls).toBeGreaterThan(0)
    await waitFor(() => client.stats.streamsOpen === 0 && server.stats.streamsOpen === 0, { what: 'both maps empty' })
  })

  test('16 streams at once, 64 MiB in total, each sha256-exact', async () => {
    const { client, server } = await sessions()
    const results = new Map<number, Promise<{ sha: string, bytes: number }>>()
    server.on('stream', (s: MuxStream) => { results.set(s.id, receive(s)); s.end() })
    const perStream = 4 * MiB
    const sent = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
      const stream = client.openStream()
      stream.resume()
      return { id: stream.id, sha: await send(stream, source(i, perStream).chunks()) }
    }))
    for (const { id, sha } of sent) expect(await results.get(id)).toEqual({ sha, bytes: perStream })
    expect(server.stats.bytesIn).toBe(16 * perStream)
  })

  test('1,200 concurrent streams each echo their payload', async () => {
    const { client, server } = await sessions({ maxStreams: 2048 })
    server.on('stream', (s: MuxStream) => { pipeline(s, s).catch(() => {}) })
    const n = 1200
    const echoes = await Promise.all(Array.from({ length: n }, async (_, i) => {
      const stream = client.openStream()
      const payload = Buffer.from(`stream ${i} `.repeat(100 + (i % 50)))
      const back: Buffer[] = []
      stream.on('data', (c: Buffer) => back.push(c))
      stream.end(payload)
      await once(stream, 'end')
      return Buffer.concat(back).equals(payload)
    }))
    expect(echoes.every(Boolean)).toBe(true)
    expect(server.stats.streamsAcceptedTotal).toBe(n)
    await waitFor(() => client.stats.streamsOpen === 0 && server.stats.streamsOpen === 0, { what: 'both maps empty' })
  })

  test('10,000 streams opened and closed leave both maps empty', async () => {
    const { client, server } = await sessions()
    server.on('stream', (s: MuxStream) => { s.on('error', () => {}); s.resume(); s.on('end', () => s.end()) })
    let reset = 0
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 1000 }, async (_, i) => {
        const s = client.openStream()
        const closed = once(s, 'close')
        if (i % 10 === 0) {
          s.on('error', () => {})
          s.destroy()
          reset++
        } else {
          s.resume()
          s.end(Buffer.from('x'))
        }
        await closed
      }))
    }
    expect(client.stats.streamsOpenedTotal).toBe(10_000)
    expect(reset).toBe(1000)
    await waitFor(() => client.stats.streamsOpen === 0 && server.stats.streamsOpen === 0, { what: 'both maps empty' })
    expect(client.stats.bufferedBytes).toBe(0)
    expect(server.stats.bufferedBytes).toBe(0)
  })

  test('a stalled reader bounds buffering by the window and blocks the writer; resuming delivers sha256-exact data', async () => {
    const { client, server } = await sessions()
    // Four times the 16 MiB bound asserted below, so a reader that buffered everything would fail it.
    const total = 64 * MiB
    const accepted = new Promise<MuxStream>((resolve) => { server.once('stream', resolve) })
    const stream = client.openStream()
    let blockedWrites = 0
    let peak = 0
    let peakSession = 0
    let windowAtPeak = 0
    let overs = 0
    const sample = (s: MuxStream): void => {
      if (s.bufferedBytes > s.receiveWindowBytes || server.stats.bufferedBytes > s.receiveWindowBytes) overs++
      if (s.bufferedBytes > peak) { peak = s.bufferedBytes; windowAtPeak = s.receiveWindowBytes }
      peakSession = Math.max(peakSession, server.stats.bufferedBytes)
    }
    const sentSha = (async () => {
      const hash = createHash('sha256')
      for (const chunk of source(3, total).chunks()) {
        hash.update(chunk)
        if (!stream.write(chunk)) {
          blockedWrites++
          await once(stream, 'drain')
        }
      }
      stream.end()
      return hash.digest('hex')
    })()
    const reader = await accepted
    reader.pause()
    // Poll every turn of the event loop while the writer pushes into a reader that does not read.
    await waitFor(() => {
      sample(reader)
      return reader.bufferedBytes === reader.receiveWindowBytes && stream.writableNeedDrain && blockedWrites > 0
    }, { what: 'the window to fill and the writer to block', intervalMs: 0 })
    for (let i = 0; i < 200; i++) {
      await new Promise<void>((resolve) => { setImmediate(resolve) })
      sample(reader)
    }
    expect(reader.bufferedBytes).toBe(256 * 1024)
    expect(server.stats.bufferedBytes).toBe(256 * 1024)
    expect(stream.writableNeedDrain).toBe(true)
    expect(client.stats.bytesOut).toBeLessThanOrEqual(256 * 1024)
    expect(client.stats.windowStalls).toBeGreaterThan(0)

    const hash = createHash('sha256')
    let bytes = 0
    reader.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; sample(reader) })
    reader.resume()
    await once(reader, 'end')
    expect(bytes).toBe(total)
    expect(hash.digest('hex')).toBe(await sentSha)
    expect(overs).toBe(0)
    expect(peak).toBeLessThanOrEqual(windowAtPeak)
    expect(peakSession).toBeLessThanOrEqual(16 * MiB)
    stream.resume()
    reader.end()
    await waitFor(() => client.stats.streamsOpen === 0 && server.stats.streamsOpen === 0, { what: 'both maps empty' })
  })

  test('auto-tuning grows a stream window on a long link, within the stream and session caps', async () => {
    const options = { maxStreamWindowBytes: 4 * MiB, maxSessionWindowBytes: 6 * MiB }
    const { client, server } = await sessions(options, await delayedLink(10))
    // Auto-tuning needs an RTT estimate; its value is the link's business (no wall-clock bound here).
    await waitFor(() => client.stats.rttMs !== undefined && server.stats.rttMs !== undefined, { what: 'initial RTT measured' })
    const readers: MuxStream[] = []
    const perStream = 24 * MiB
    let received = 0
    let peakExtra = 0
    server.on('stream', (s: MuxStream) => {
      readers.push(s)
      s.on('data', (c: Buffer) => {
        received += c.length
        expect(s.receiveWindowBytes).toBeLessThanOrEqual(4 * MiB)
        // No stream has ended yet, so every reader still holds its share of the session budget.
        const extra = readers.reduce((sum, r) => sum + r.receiveWindowBytes - 256 * 1024, 0)
        peakExtra = Math.max(peakExtra, extra)
      })
    })
    const writers = Array.from({ length: 3 }, () => client.openStream())
    await Promise.all(writers.map(async (stream, i) => {
      for (const chunk of source(i, perStream).chunks()) {
        if (!stream.write(chunk)) await once(stream, 'drain')
      }
    }))
    await waitFor(() => received === 3 * perStream, { what: 'all bytes received', timeoutMs: 60_000 })
    const windows = readers.map((r) => r.receiveWindowBytes)
    expect(Math.max(...windows)).toBeGreaterThan(256 * 1024)
    for (const w of windows) expect(w).toBeLessThanOrEqual(4 * MiB)
    expect(peakExtra).toBeLessThanOrEqual(6 * MiB)
    expect(peakExtra).toBeGreaterThan(0)
    for (const w of writers) w.end()
    for (const r of readers) r.end()
    await waitFor(() => client.stats.streamsOpen === 0 && server.stats.streamsOpen === 0, { what: 'both maps empty' })
  })

  test('close() is graceful: GoAway, open streams finish, both sides close', async () => {
    const { client, server } = await sessions()
    const goaway = once(server, 'goaway')
    const accepted = new Promise<MuxStream>((resolve) => { server.once('stream', resolve) })
    const stream = client.openStream()
    stream.write('before close')
    const reader = await accepted
    const closing = client.close({ graceMs: 5000 })
    expect(await goaway).toEqual(['normal'])
    expect(() => server.openStream()).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_GO_AWAY' }))
    stream.end(' and after')
    const got = await receive(reader)
    expect(got.bytes).toBe('before close and after'.length)
    reader.end()
    const serverClosed = once(server, 'close')
    await closing
    expect(client.closed).toBe(true)
    expect(await serverClosed).toEqual([undefined])
    await client.close()
  })

  test('close() resets streams still open after the grace period', async () => {
    const { client, server } = await sessions()
    const accepted = new Promise<MuxStream>((resolve) => { server.once('stream', resolve) })
    const stream = client.openStream()
    stream.on('error', () => {})
    stream.write('x')
    const reader = await accepted
    const readerErr = once(reader, 'error')
    await client.close({ graceMs: 20 })
    expect(stream.destroyed).toBe(true)
    expect((await readerErr)[0]).toMatchObject({ code: expect.stringMatching(/SLK_ERR_MUX_(STREAM_RESET|TRANSPORT_CLOSED)/) })
  })

  test('abort() destroys every stream with the given error', async () => {
    const { client } = await sessions()
    const stream = client.openStream()
    const errored = once(stream, 'error')
    const closed = once(client, 'close')
    const boom = new Error('boom')
    client.abort(boom)
    expect((await errored)[0]).toBe(boom)
    expect((await closed)[0]).toBe(boom)
    await expect(client.ping()).rejects.toMatchObject({ code: 'SLK_ERR_MUX_SESSION_CLOSED' })
  })
})
