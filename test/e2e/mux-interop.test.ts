/**
 * Interop with the Go reference: our MuxSession against github.com/hashicorp/yamux (v0.1.x, built
 * from test/interop/yamux-peer with the Go toolchain) over loopback TCP, with the Go peer as yamux
 * client and as server, and each scenario's streams opened by either side.
 */
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { beforeAll, describe, expect, onTestFinished, test } from 'vitest'
import type { MuxError, MuxStream } from '@spokelink/protocol'
import { deterministicSource, waitFor } from '@spokelink/testkit'
import type { LogEntry } from '@spokelink/testkit'
import { buildYamuxPeer, startInteropCase } from '../interop/yamux-peer.js'
import type { GoRole, InteropCase, InteropCaseOptions, Opener } from '../interop/yamux-peer.js'

const MiB = 1024 * 1024
const BULK_BYTES = 64 * MiB
const ECHO_STREAMS = 100
// Over one 256 KiB window (hashicorp's MaxStreamWindowSize), so every stream needs window updates.
const ECHO_BYTES = 300_001

interface Hashed { bytes: number, sha256: string }

/** Hashes what the stream delivers until the peer's FIN; rejects on error or a close without FIN. */
async function readAll (stream: MuxStream): Promise<Hashed & { text: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  let head = ''
  stream.on('data', (chunk: Buffer) => {
    hash.update(chunk)
    bytes += chunk.length
    if (head.length < 64) head += chunk.toString('latin1', 0, 64)
  })
  await once(stream, 'end')
  return { bytes, sha256: hash.digest('hex'), text: head }
}

/** Writes `bytes` deterministic bytes honouring backpressure, then ends (FIN); returns their hash. */
async function writeAll (stream: MuxStream, bytes: number, seed: number): Promise<Hashed> {
  const hash = createHash('sha256')
  for await (const chunk of deterministicSource(bytes, seed)) {
    const buf = chunk as Buffer
    hash.update(buf)
    if (!stream.write(buf)) await once(stream, 'drain')
  }
  stream.end()
  return { bytes, sha256: hash.digest('hex') }
}

/** Both directions at once, as the Go peer's sendAndReceive does. */
async function exchange (stream: MuxStream, bytes: number, seed: number): Promise<{ sent: Hashed, recv: Hashed }> {
  const received = readAll(stream)
  const [sent, recv] = await Promise.all([writeAll(stream, bytes, seed), received])
  return { sent, recv: { bytes: recv.bytes, sha256: recv.sha256 } }
}

/** Resolves once the stream has closed, whether or not it errored ('error' is recorded by the case). */
async function closed (stream: MuxStream): Promise<void> {
  if (stream.closed) return
  await new Promise<void>((resolve) => { stream.once('close', () => { resolve() }) })
}

function expectMuxError (err: unknown, code: MuxError['code']): void {
  expect(err).toMatchObject({ name: 'MuxError', code })
}

let bin = ''
beforeAll(async () => {
  bin = await buildYamuxPeer()
}, 300_000)

async function start (options: InteropCaseOptions): Promise<InteropCase> {
  const c = await startInteropCase(bin, options)
  onTestFinished(async () => {
    c.session.abort()
    await c.peer.kill('SIGKILL')
  })
  return c
}

async function noStreamsLeft (c: InteropCase): Promise<void> {
  await waitFor(() => c.session.stats.streamsOpen === 0, { what: 'our session to forget every stream', timeoutMs: 30_000 })
}

const roles: GoRole[] = ['client', 'server']
const openers: Opener[] = ['go', 'node']

describe.each(roles)('Go hashicorp/yamux as %s', (role) => {
  describe.each(openers)('streams opened by %s', (opener) => {
    test(`${ECHO_STREAMS} concurrent streams echo ${ECHO_BYTES} bytes each, sha256-exact`, async () => {
      const c = await start({ role, scenario: 'echo', opener, args: ['-streams', String(ECHO_STREAMS), '-bytes', String(ECHO_BYTES)] })
      const streams = await Promise.all(Array.from({ length: ECHO_STREAMS }, async () => c.stream()))
      if (opener === 'node') {
        // We send and check; Go echoes and reports what passed through it.
        const results = await Promise.all(streams.map(async (s, i) => exchange(s, ECHO_BYTES, i)))
        for (const { sent, recv } of results) {
          expect(sent.bytes).toBe(ECHO_BYTES)
          expect(recv).toEqual(sent)
        }
        const echoed = new Map<number, LogEntry>()
        for (let i = 0; i < ECHO_STREAMS; i++) {
          const e = await c.event('echoed')
          echoed.set(Number(e.stream), e)
        }
        streams.forEach((s, i) => {
          expect(echoed.get(s.id)).toMatchObject({ bytes: ECHO_BYTES, sha256: results[i]?.sent.sha256 })
        })
      } else {
        // Go sends and checks; we echo.
        await Promise.all(streams.map(async (s) => { await pipeline(s, s) }))
        const ids = new Set<number>()
        for (let i = 0; i < ECHO_STREAMS; i++) {
          const e = await c.event('echo-checked')
          expect(e).toMatchObject({ sentBytes: ECHO_BYTES, recvBytes: ECHO_BYTES })
          expect(e.recv).toBe(e.sent)
          ids.add(Number(e.stream))
        }
        expect([...ids].sort((a, b) => a - b)).toEqual(streams.map((s) => s.id).sort((a, b) => a - b))
      }
      // Ids follow the opener's role: the yamux client uses odd ids, the server even ones.
      const openerIsClient = (opener === 'go') === (role === 'client')
      for (const s of streams) expect(s.id % 2).toBe(openerIsClient ? 1 : 0)
      expect(await c.event('echo-done')).toMatchObject({ streams: ECHO_STREAMS, openStreams: 0 })
      await noStreamsLeft(c)
      expect([...c.streamErrors.values()].filter((e) => e !== undefined)).toEqual([])
      await c.finish()
    })

    test('64 MiB each way at once through one stream, sha256 compared on both ends', async () => {
      const c = await start({ role, scenario: 'bulk', opener, args: ['-bytes', String(BULK_BYTES)] })
      const stream = await c.stream()
      const ours = await exchange(stream, BULK_BYTES, 11)
      const theirs = await c.event('bulk', 240_000)
      expect(ours.sent.bytes).toBe(BULK_BYTES)
      expect(ours.recv.bytes).toBe(BULK_BYTES)
      expect(theirs).toMatchObject({
        stream: stream.id,
        recvBytes: BULK_BYTES,
        recv: ours.sent.sha256,
        sentBytes: BULK_BYTES,
        sent: ours.recv.sha256,
        openStreams: 0,
      })
      await noStreamsLeft(c)
      await c.finish()
    })

    test('half-close: the side that sent FIN still receives 1 MiB, then both ends close', async () => {
      const bytes = MiB + 3
      const c = await start({ role, scenario: 'half-close', opener, args: ['-bytes', String(bytes)] })
      const stream = await c.stream()
      if (opener === 'go') {
        // Go wrote and closed; we read to its FIN, then send more than one window back.
        const got = await readAll(stream)
        expect(got.text).toBe('hello from go')
        const sent = await writeAll(stream, bytes, 5)
        expect(await c.event('half-close')).toMatchObject({ recvBytes: bytes, recv: sent.sha256, openStreams: 0 })
      } else {
        const received = readAll(stream)
        stream.end('hello from node')
        expect(await c.event('fin-received')).toMatchObject({ text: 'hello from node' })
        const got = await received
        expect(await c.event('half-close')).toMatchObject({ sentBytes: bytes, sent: got.sha256, openStreams: 0 })
        expect(got.bytes).toBe(bytes)
      }
      await noStreamsLeft(c)
      expect(c.streamErrors.get(stream)).toBeUndefined()
      await c.finish()
    })

    test('our destroy() resets the stream: Go Read and Write fail with ErrConnectionReset', async () => {
      const c = await start({ role, scenario: 'rst-from-node', opener })
      const stream = await c.stream()
      const [first] = await once(stream, 'data') as [Buffer]
      expect(first.toString()).toBe('ping')
      stream.destroy()
      expect(await c.event('reset-seen')).toMatchObject({
        readError: 'connection reset',
        writeError: 'connection reset',
        isReset: true,
        openStreams: 0,
      })
      await noStreamsLeft(c)
      await c.finish()
    })

    test("Go's RST (StreamCloseTimeout after its FIN) errors our stream with SLK_ERR_MUX_STREAM_RESET", async () => {
      const c = await start({ role, scenario: 'rst-from-go', opener, args: ['-stream-close-timeout', '300ms'] })
      const stream = await c.stream()
      // We read Go's data and FIN but never end our side, so Go gives up and resets.
      const errored = closed(stream)
      expect((await readAll(stream)).text).toBe('bye')
      await c.event('fin-sent')
      await errored
      expectMuxError(c.streamErrors.get(stream), 'SLK_ERR_MUX_STREAM_RESET')
      expect(await c.event('rst-sent')).toMatchObject({ openStreams: 0 })
      await noStreamsLeft(c)
      await c.finish()
    })

    test('GoAway from Go: our openStream() throws SLK_ERR_MUX_GO_AWAY, the open stream carries on', async () => {
      const c = await start({ role, scenario: 'goaway-go', opener })
      const stream = await c.stream()
      await c.event('goaway-sent') // Go saw our pong to a ping sent after its GoAway
      expect(c.session.remoteGoAway).toBe('normal')
      let openErr: unknown
      try {
        c.session.openStream()
      } catch (err) {
        openErr = err
      }
      expectMuxError(openErr, 'SLK_ERR_MUX_GO_AWAY')
      const ours = await exchange(stream, 100_000, 21)
      expect(await c.event('stream-after-goaway')).toMatchObject({
        recvBytes: 100_000, recv: ours.sent.sha256, sentBytes: 100_000, sent: ours.recv.sha256, openStreams: 0,
      })
      await noStreamsLeft(c)
      await c.finish()
    })

    test("our GoAway: Go's Open fails with ErrRemoteGoAway, the open stream carries on", async () => {
      const c = await start({ role, scenario: 'goaway-node', opener })
      const stream = await c.stream()
      c.session.goAway('normal')
      c.send('goaway')
      expect(await c.event('open-after-goaway')).toMatchObject({ error: 'remote end is not accepting connections', isRemoteGoAway: true })
      const ours = await exchange(stream, 100_000, 22)
      expect(await c.event('stream-after-goaway')).toMatchObject({
        recvBytes: 100_000, recv: ours.sent.sha256, sentBytes: 100_000, sent: ours.recv.sha256, openStreams: 0,
      })
      expect(c.session.stats.streamsRefusedTotal).toBe(0)
      await noStreamsLeft(c)
      await c.finish()
    })
  })

  test("Go's full accept backlog answers our SYN with RST: SLK_ERR_MUX_STREAM_RESET; the backlogged stream works", async () => {
    const c = await start({ role, scenario: 'backlog-rst', opener: 'node', args: ['-accept-backlog', '1'] })
    const waiting = await c.stream()
    const refused = await c.stream()
    await closed(refused)
    expectMuxError(c.streamErrors.get(refused), 'SLK_ERR_MUX_STREAM_RESET')
    const echoed = readAll(waiting)
    waiting.end('hello\n')
    c.send('accept')
    expect(await c.event('accepted')).toMatchObject({ stream: waiting.id, line: 'hello\n', openStreams: 0 })
    expect((await echoed).text).toBe('hello\n')
    await noStreamsLeft(c)
    await c.finish()
  })

  test('ping both ways: RTT > 0 on each side', async () => {
    const c = await start({ role, scenario: 'ping' })
    const ours = [await c.session.ping(), await c.session.ping(), await c.session.ping()]
    const theirs = await c.event('pinged')
    for (const rtt of ours) expect(rtt).toBeGreaterThan(0)
    expect(c.session.stats.rttMs).toBeGreaterThan(0)
    expect(theirs.rttNs).toHaveLength(3)
    for (const rtt of theirs.rttNs as unknown[]) expect(rtt).toBeGreaterThan(0)
    await c.finish()
  })
})
