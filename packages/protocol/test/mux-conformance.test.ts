import type net from 'node:net'
import { once } from 'node:events'
import { describe, expect, onTestFinished, test } from 'vitest'
import { createManualClock, socketPair, waitFor } from '@spokelink/testkit'
import { createMuxSession, MuxError, MUX_SESSION_DEFAULTS } from '../src/index.js'
import type { MuxSession, MuxSessionDeps, MuxSessionOptions, MuxStream } from '../src/index.js'
import { FLAG, FRAME_TYPE, encodeHeader } from '../src/mux/frame.js'
import type { FrameType } from '../src/mux/frame.js'

interface RawFrame { type: number, flags: number, streamId: number, length: number, payload: Buffer }

/** The misbehaving peer: a raw TCP socket that writes and reads yamux frames by hand. */
class RawPeer {
  readonly frames: RawFrame[] = []
  #buf = Buffer.alloc(0)
  answerPings = true
  constructor (readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk])
      for (;;) {
        if (this.#buf.length < 12) return
        const type = this.#buf.readUInt8(1)
        const length = this.#buf.readUInt32BE(8)
        const payloadBytes = type === FRAME_TYPE.DATA ? length : 0
        if (this.#buf.length < 12 + payloadBytes) return
        const f: RawFrame = { type, flags: this.#buf.readUInt16BE(2), streamId: this.#buf.readUInt32BE(4), length, payload: this.#buf.subarray(12, 12 + payloadBytes) }
        this.#buf = this.#buf.subarray(12 + payloadBytes)
        if (this.answerPings && f.type === FRAME_TYPE.PING && (f.flags & FLAG.SYN) === FLAG.SYN) this.send(FRAME_TYPE.PING, FLAG.ACK, 0, f.length)
        this.frames.push(f)
      }
    })
    socket.on('error', () => {
      // the session under test may reset the connection; tests assert on frames and session events
    })
  }

  send (type: FrameType, flags: number, streamId: number, length: number, payload?: Buffer): void {
    this.socket.write(payload === undefined ? encodeHeader(type, flags, streamId, length) : Buffer.concat([encodeHeader(type, flags, streamId, length), payload]))
  }

  data (streamId: number, payload: Buffer, flags = 0): void {
    this.send(FRAME_TYPE.DATA, flags, streamId, payload.length, payload)
  }

  async frame (match: (f: RawFrame) => boolean, what: string): Promise<RawFrame> {
    return waitFor(() => this.frames.find(match), { what, timeoutMs: 10_000, intervalMs: 2 })
  }

  /** Round-trips a ping: every frame the session sent before answering it has arrived. */
  async sync (): Promise<void> {
    const opaque = 0x5000_0000 + this.frames.length
    this.send(FRAME_TYPE.PING, FLAG.SYN, 0, opaque)
    await this.frame((f) => f.type === FRAME_TYPE.PING && (f.flags & FLAG.ACK) === FLAG.ACK && f.length === opaque, `ping ${opaque} answered`)
  }

  dataBytes (streamId: number): number {
    return this.frames.filter((f) => f.type === FRAME_TYPE.DATA && f.streamId === streamId).reduce((n, f) => n + f.length, 0)
  }
}

const noop = (): void => {}

/** Opens a stream whose teardown error (when the test ends the session) is expected. */
function open (session: MuxSession): MuxStream {
  const stream = session.openStream()
  stream.on('error', noop)
  return stream
}

async function setup (role: 'client' | 'server', options: MuxSessionOptions = {}, listen = true, deps: MuxSessionDeps = {}): Promise<{ session: MuxSession, peer: RawPeer, socket: net.Socket }> {
  const [socket, theirs] = await socketPair()
  const session = createMuxSession(socket, role, { keepaliveIntervalMs: 0, ...options }, deps)
  if (listen) session.on('stream', (s: MuxStream) => s.on('error', noop))
  const peer = new RawPeer(theirs)
  onTestFinished(() => {
    session.abort()
    theirs.destroy()
  })
  return { session, peer, socket }
}

const MiB = 1024 * 1024

/**
 * Makes our side's transport stop draining for real: the peer stops reading, opens stream 1 with 8 MiB
 * of credit and our application writes it all, more than loopback's kernel buffers hold (about 4 MiB).
 */
async function blockOurWrites (session: MuxSession, peer: RawPeer, socket: net.Socket): Promise<void> {
  peer.socket.pause()
  session.once('stream', (s: MuxStream) => { s.write(Buffer.alloc(8 * MiB)) })
  peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 8 * MiB)
  await waitFor(() => socket.writableNeedDrain && socket.writableLength > 0, { what: 'our transport to stop draining' })
}

/** Records the largest queued-answer count and transport buffer seen after each inbound chunk is handled. */
function samplePeaks (session: MuxSession, socket: net.Socket): { queued: number, buffered: number } {
  const peaks = { queued: session.stats.queuedControlFrames, buffered: socket.writableLength }
  // Added after the session's own 'data' listener, so it runs once the session has handled the chunk.
  socket.on('data', () => {
    peaks.queued = Math.max(peaks.queued, session.stats.queuedControlFrames)
    peaks.buffered = Math.max(peaks.buffered, socket.writableLength)
  })
  return peaks
}

/** `n` PING SYN frames with opaque values `first`, `first + 1`, … */
function pings (n: number, first = 0): Buffer {
  const burst = Buffer.allocUnsafe(n * 12)
  for (let i = 0; i < n; i++) burst.set(encodeHeader(FRAME_TYPE.PING, FLAG.SYN, 0, first + i), i * 12)
  return burst
}

const isWU = (id: number, flag: number) => (f: RawFrame): boolean => f.type === FRAME_TYPE.WINDOW_UPDATE && f.streamId === id && (f.flags & flag) === flag
const isGoAway = (code: number) => (f: RawFrame): boolean => f.type === FRAME_TYPE.GO_AWAY && f.length === code

async function nextStream (session: MuxSession): Promise<MuxStream> {
  const [stream] = await once(session, 'stream') as [MuxStream]
  return stream
}

async function closedWith (session: MuxSession): Promise<unknown> {
  if (session.closed) throw new Error('session closed before the test listened')
  const [err] = await once(session, 'close') as [unknown]
  return err
}

describe('yamux conformance against a raw peer', () => {
  test('a SYN opens a stream that is ACKed when accepted', async () => {
    const { session, peer } = await setup('server')
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    const stream = await accepted
    expect(stream.id).toBe(1)
    await peer.frame(isWU(1, FLAG.ACK), 'ACK for stream 1')
    expect(session.stats.streamsAcceptedTotal).toBe(1)
    // data may ride on the SYN frame itself
    const second = nextStream(session)
    peer.data(3, Buffer.from('syn+data'), FLAG.SYN)
    const s3 = await second
    const [chunk] = await once(s3, 'data') as [Buffer]
    expect(chunk.toString()).toBe('syn+data')
  })

  test('with ackDelayMs the ACK waits for the stream\'s first frame and goes out with it, in one write', async () => {
    const { session, peer } = await setup('server', { ackDelayMs: 60_000 })
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    const stream = await accepted
    await peer.sync()
    expect(peer.frames.filter((f) => f.streamId === 1)).toEqual([])
    const chunks: Buffer[] = []
    peer.socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    stream.write('answer')
    const data = await peer.frame((f) => f.type === FRAME_TYPE.DATA && f.streamId === 1, 'the first DATA of stream 1')
    expect(data.payload.toString()).toBe('answer')
    const ours = peer.frames.filter((f) => f.streamId === 1)
    expect(ours.map((f) => [f.type, f.flags])).toEqual([[FRAME_TYPE.WINDOW_UPDATE, FLAG.ACK], [FRAME_TYPE.DATA, 0]])
    // ACK header and DATA frame arrived as one read: they were one write.
    expect(chunks[0]?.length).toBe(12 + 12 + 'answer'.length)
  })

  test('with ackDelayMs, data the peer sent before our ACK is accounted: our view of its window equals its own', async () => {
    const KiB = 1024
    const { session, peer } = await setup('server', { ackDelayMs: 60_000, initialStreamWindowBytes: 512 * KiB, windowAutoTuning: false })
    const accepted = nextStream(session)
    peer.data(1, Buffer.alloc(200 * KiB, 1), FLAG.SYN)
    const stream = await accepted
    let consumed = 0
    stream.on('data', (chunk: Buffer) => { consumed += chunk.length })
    const ack = await peer.frame(isWU(1, FLAG.ACK), 'the ACK, sent with the first credit')
    expect(ack.length).toBe(256 * KiB)
    // The peer's own view: 256 KiB to start, plus every credit, minus what it sent.
    const peerWindow = (): number => 256 * KiB + peer.frames.filter((f) => f.type === FRAME_TYPE.WINDOW_UPDATE && f.streamId === 1).reduce((n, f) => n + f.length, 0) - sent
    let sent = 200 * KiB
    const more = peerWindow()
    peer.data(1, Buffer.alloc(more, 2))
    sent += more
    await waitFor(() => consumed === sent, { what: 'everything read' })
    await peer.sync()
    expect(stream.receiveAvailableBytes).toBe(peerWindow())
  })

  test('with ackDelayMs a silent stream is not ACKed before the delay is over, then ACKed alone', async () => {
    // Not before: with a delay no test outlives, a ping answered after the SYN finds no ACK sent.
    const held = await setup('server', { ackDelayMs: 600_000 })
    const heldAccepted = nextStream(held.session)
    held.peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    await heldAccepted
    await held.peer.sync()
    expect(held.peer.frames.filter((f) => f.streamId === 1)).toEqual([])

    // Then: with a short delay and nothing to send, the ACK goes out by itself, a bare WINDOW_UPDATE.
    const { session, peer } = await setup('server', { ackDelayMs: 50 })
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    await accepted
    await peer.frame(isWU(1, FLAG.ACK), 'the delayed ACK')
    await peer.sync()
    expect(peer.frames.filter((f) => f.streamId === 1).map((f) => ({ type: f.type, flags: f.flags, length: f.length }))).toEqual([{ type: FRAME_TYPE.WINDOW_UPDATE, flags: FLAG.ACK, length: 0 }])
  })

  test('with ackDelayMs a stream reset before its first frame sends RST and no ACK', async () => {
    const { session, peer } = await setup('server', { ackDelayMs: 60_000 })
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    const stream = await accepted
    stream.destroy()
    await peer.frame(isWU(1, FLAG.RST), 'RST of stream 1')
    await peer.sync()
    expect(peer.frames.filter((f) => f.streamId === 1).map((f) => f.flags)).toEqual([FLAG.RST])
  })

  test('a SYN with the wrong parity is a protocol error answered with GoAway(protocol-error)', async () => {
    const { session, peer } = await setup('server')
    const closed = closedWith(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 2, 0)
    await peer.frame(isGoAway(1), 'GoAway protocol-error')
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_PROTOCOL' })
    expect(session.stats.protocolErrors).toBe(1)
  })

  test('a duplicate SYN is a protocol error', async () => {
    const { session, peer } = await setup('server')
    session.on('stream', () => {})
    const closed = closedWith(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_DUPLICATE_STREAM', closeReason: 'protocol-error' })
    await peer.frame(isGoAway(1), 'GoAway protocol-error')
  })

  test('DATA on a never-opened stream is a protocol error', async () => {
    const { session, peer } = await setup('server')
    const closed = closedWith(session)
    peer.data(5, Buffer.from('who?'))
    const err = await closed
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_UNKNOWN_STREAM' })
    expect((err as Error).message).toBe('peer sent DATA on stream 5, which was never opened')
    await peer.frame(isGoAway(1), 'GoAway protocol-error')
  })

  test('frames for a stream we already closed are drained (hashicorp behaviour)', async () => {
    const { session, peer } = await setup('client')
    const stream = open(session)
    await peer.frame(isWU(1, FLAG.SYN), 'SYN')
    stream.destroy()
    await peer.frame(isWU(1, FLAG.RST), 'RST')
    peer.data(1, Buffer.alloc(1000))
    peer.send(FRAME_TYPE.WINDOW_UPDATE, 0, 1, 4096)
    await peer.sync()
    expect(session.closed).toBe(false)
    expect(session.stats.streamsOpen).toBe(0)
  })

  test('a peer overrunning the receive window is a protocol error, before the payload is read', async () => {
    const { session, peer } = await setup('server')
    let stream: MuxStream | undefined
    session.on('stream', (s: MuxStream) => { stream = s; s.on('error', () => {}) })
    const closed = closedWith(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    peer.data(1, Buffer.alloc(200_000))
    peer.data(1, Buffer.alloc(100_000))
    const err = await closed
    expect(err).toBeInstanceOf(MuxError)
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_WINDOW_EXCEEDED', closeReason: 'protocol-error' })
    expect((err as Error).message).toBe('peer sent 100000 bytes on stream 1 with a 62144-byte window')
    await peer.frame(isGoAway(1), 'GoAway protocol-error')
    expect(stream?.destroyed).toBe(true)
  })

  test('a 4 GiB DATA length is rejected from the header alone', async () => {
    const { session, peer } = await setup('server')
    session.on('stream', (s: MuxStream) => { s.on('error', () => {}) })
    const closed = closedWith(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    peer.send(FRAME_TYPE.DATA, 0, 1, 0xffff_ffff)
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_FRAME_TOO_LARGE' })
    await peer.frame(isGoAway(1), 'GoAway protocol-error')
  })

  test('FIN on a DATA frame delivers the payload, then ends the readable side', async () => {
    const { session, peer } = await setup('server')
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    const stream = await accepted
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    const ended = once(stream, 'end')
    peer.data(1, Buffer.from('last words'), FLAG.FIN)
    await ended
    expect(Buffer.concat(chunks).toString()).toBe('last words')
    // half-closed: we can still write, and the peer reads it
    stream.end(Buffer.from('reply'))
    await peer.frame((f) => f.type === FRAME_TYPE.DATA && f.streamId === 1 && f.payload.toString() === 'reply', 'reply data')
    await peer.frame(isWU(1, FLAG.FIN), 'our FIN')
    await waitFor(() => session.stats.streamsOpen === 0, { what: 'stream removed after both FINs' })
  })

  test('ACK|FIN on a WINDOW_UPDATE (what Go sends) acknowledges and ends the stream', async () => {
    const { session, peer } = await setup('client')
    const stream = open(session)
    await peer.frame(isWU(1, FLAG.SYN), 'SYN for stream 1')
    const ended = once(stream, 'end')
    const closed = once(stream, 'close')
    stream.resume()
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.ACK | FLAG.FIN, 1, 0)
    await ended
    stream.end()
    await peer.frame(isWU(1, FLAG.FIN), 'our FIN')
    await closed
    expect(session.stats.streamsOpen).toBe(0)
  })

  test('RST from the peer errors the stream with SLK_ERR_MUX_STREAM_RESET and fails writes', async () => {
    const { session, peer } = await setup('client')
    const stream = open(session)
    await peer.frame(isWU(1, FLAG.SYN), 'SYN')
    const errored = once(stream, 'error')
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.RST, 1, 0)
    const [err] = await errored as [MuxError]
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_STREAM_RESET' })
    expect(err.message).toBe('peer reset stream 1')
    await new Promise<void>((resolve) => {
      stream.write(Buffer.from('x'), (e) => {
        expect(e).toBeTruthy()
        resolve()
      })
    })
    expect(session.stats.streamsOpen).toBe(0)
    expect(session.closed).toBe(false)
  })

  test('end() sends FIN and destroy() sends RST on the wire', async () => {
    const { session, peer } = await setup('client')
    const a = open(session)
    const b = open(session)
    expect([a.id, b.id]).toEqual([1, 3])
    a.end(Buffer.from('bye'))
    await peer.frame((f) => f.type === FRAME_TYPE.DATA && f.streamId === 1 && f.payload.toString() === 'bye', 'data on 1')
    await peer.frame(isWU(1, FLAG.FIN), 'FIN on 1')
    b.destroy()
    await peer.frame(isWU(3, FLAG.RST), 'RST on 3')
    expect(peer.frames.some(isWU(1, FLAG.RST))).toBe(false)
  })

  test('a GoAway from the peer blocks openStream while existing streams go on', async () => {
    const { session, peer } = await setup('client')
    const stream = open(session)
    await peer.frame(isWU(1, FLAG.SYN), 'SYN')
    const goaway = once(session, 'goaway')
    peer.send(FRAME_TYPE.GO_AWAY, 0, 0, 0)
    expect(await goaway).toEqual(['normal'])
    expect(session.remoteGoAway).toBe('normal')
    expect(() => session.openStream()).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_GO_AWAY' }))
    const data = once(stream, 'data')
    peer.data(1, Buffer.from('still here'))
    expect((await data)[0]).toEqual(Buffer.from('still here'))
    stream.write('and us')
    await peer.frame((f) => f.type === FRAME_TYPE.DATA && f.payload.toString() === 'and us', 'our data after GoAway')
  })

  test('a GoAway with an error code ends the session', async () => {
    const { session, peer } = await setup('client')
    const closed = closedWith(session)
    peer.send(FRAME_TYPE.GO_AWAY, 0, 0, 2)
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_GO_AWAY' })
    expect(session.remoteGoAway).toBe('internal-error')
  })

  test('goAway() sends the code; inbound SYNs after it are refused with RST', async () => {
    const { session, peer } = await setup('server')
    session.goAway('internal-error')
    await peer.frame(isGoAway(2), 'GoAway internal-error')
    expect(() => session.openStream()).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_GO_AWAY' }))
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    await peer.frame(isWU(1, FLAG.RST), 'RST for stream 1')
    expect(session.stats.streamsRefusedTotal).toBe(1)
  })

  test('a ping is answered with ACK and the same opaque value', async () => {
    const { peer } = await setup('server')
    peer.send(FRAME_TYPE.PING, FLAG.SYN, 0, 0xcafe_f00d)
    const pong = await peer.frame((f) => f.type === FRAME_TYPE.PING && (f.flags & FLAG.ACK) === FLAG.ACK, 'pong')
    expect(pong).toMatchObject({ streamId: 0, length: 0xcafe_f00d })
  })

  test('ping() measures the round trip', async () => {
    const { session, peer } = await setup('client', { windowAutoTuning: false })
    const rtt = await session.ping()
    expect(rtt).toBeGreaterThan(0)
    expect(session.stats.rttMs).toBe(rtt)
    const sent = peer.frames.find((f) => f.type === FRAME_TYPE.PING && (f.flags & FLAG.SYN) === FLAG.SYN)
    expect(sent?.streamId).toBe(0)
    peer.answerPings = false
    await expect(session.ping({ timeoutMs: 50 })).rejects.toMatchObject({ code: 'SLK_ERR_MUX_PING_TIMEOUT' })
    const ac = new AbortController()
    const aborted = session.ping({ signal: ac.signal })
    ac.abort(new Error('caller gave up'))
    await expect(aborted).rejects.toThrow('caller gave up')
  })

  test('an unanswered keepalive aborts the session with SLK_ERR_MUX_KEEPALIVE_TIMEOUT', async () => {
    const { session, peer } = await setup('client', { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 60, windowAutoTuning: false })
    peer.answerPings = false
    const stream = open(session)
    const streamErr = once(stream, 'error')
    const err = await closedWith(session)
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_KEEPALIVE_TIMEOUT' })
    expect((await streamErr)[0]).toMatchObject({ code: 'SLK_ERR_MUX_KEEPALIVE_TIMEOUT' })
  })

  describe('keepalive with the default timers on an injected clock', () => {
    const interval = MUX_SESSION_DEFAULTS.keepaliveIntervalMs
    const timeout = MUX_SESSION_DEFAULTS.keepaliveTimeoutMs
    const isPingSyn = (f: RawFrame): boolean => f.type === FRAME_TYPE.PING && (f.flags & FLAG.SYN) === FLAG.SYN

    test('the defaults find a dead peer within 2 × the interval', () => {
      expect(timeout).toBeLessThanOrEqual(2 * interval)
    })

    test('a peer that goes silent is declared dead keepaliveTimeoutMs after its last frame', async () => {
      const clock = createManualClock()
      const { session, peer } = await setup('server', { keepaliveIntervalMs: interval, keepaliveTimeoutMs: timeout, windowAutoTuning: false }, true, { clock })
      peer.answerPings = false
      const closed = closedWith(session)
      clock.advance(10_000)
      peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
      await waitFor(() => session.stats.streamsAcceptedTotal === 1, { what: 'the peer\'s last frame handled' })
      clock.advance(interval - 10_000)
      await peer.frame(isPingSyn, 'a keepalive ping')
      // 10 s + 30 s: before the fix the verdict came only at 15 s + 30 s (ping sent + ping timeout).
      clock.advance(10_000 + timeout - interval - 1)
      expect(session.closed).toBe(false)
      clock.advance(1)
      expect(session.closed).toBe(true)
      expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_KEEPALIVE_TIMEOUT' })
    })

    test('a peer that keeps sending data but whose pongs are late is not declared dead', async () => {
      const clock = createManualClock()
      const { session, peer } = await setup('server', { keepaliveIntervalMs: interval, keepaliveTimeoutMs: timeout, windowAutoTuning: false }, false, { clock })
      peer.answerPings = false
      const received: Buffer[] = []
      session.on('stream', (s: MuxStream) => {
        s.on('error', noop)
        s.on('data', (chunk: Buffer) => { received.push(chunk) })
      })
      peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
      // Four keepalive timeouts of data every 5 s and not one pong: the data proves the peer alive.
      for (let t = 0; t < 4 * timeout; t += 5000) {
        peer.data(1, Buffer.from(`t=${t}`))
        await waitFor(() => Buffer.concat(received).toString().endsWith(`t=${t}`), { what: `data sent at ${t} ms read` })
        clock.advance(5000)
        expect(session.closed).toBe(false)
      }
      // Pings at 15, 60 and 105 s (one in flight at a time, each timing out after 30 s), none answered.
      await waitFor(() => peer.frames.filter(isPingSyn).length === 3, { what: 'three keepalive pings' })
      expect(session.stats.rttMs).toBeUndefined()
      expect(session.closed).toBe(false)
      expect(Buffer.concat(received).toString()).toContain(`t=${4 * timeout - 5000}`)
    })
  })

  test('the stream limit refuses an extra SYN with RST and makes openStream throw', async () => {
    const { session, peer } = await setup('server', { maxStreams: 2 })
    session.on('stream', () => {})
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 3, 0)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 5, 0)
    peer.data(5, Buffer.from('dropped'))
    await peer.frame(isWU(5, FLAG.RST), 'RST for stream 5')
    expect(peer.frames.some(isWU(1, FLAG.RST))).toBe(false)
    expect(session.stats.streamsRefusedTotal).toBe(1)
    expect(session.stats.streamsOpen).toBe(2)
    expect(() => session.openStream()).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_STREAM_LIMIT' }))
    await peer.sync()
    expect(session.closed).toBe(false)
  })

  test('the accept backlog refuses with RST; a late listener gets the backlog', async () => {
    const { session, peer } = await setup('server', { maxAcceptBacklog: 2 }, false)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 3, 0)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 5, 0)
    await peer.frame(isWU(5, FLAG.RST), 'RST for stream 5')
    expect(peer.frames.some(isWU(1, FLAG.ACK))).toBe(false)
    const ids: number[] = []
    session.on('stream', (s: MuxStream) => { ids.push(s.id); s.on('error', noop) })
    await peer.frame(isWU(3, FLAG.ACK), 'ACK for stream 3')
    expect(ids).toEqual([1, 3])
  })

  test('transport close errors every stream with SLK_ERR_MUX_TRANSPORT_CLOSED', async () => {
    const { session, peer } = await setup('client')
    const streams = [open(session), open(session), open(session)]
    const errors = streams.map(async (s) => (await once(s, 'error'))[0] as unknown)
    const closed = closedWith(session)
    await peer.frame(isWU(5, FLAG.SYN), 'third SYN')
    peer.socket.destroy()
    for (const e of await Promise.all(errors)) expect(e).toMatchObject({ code: 'SLK_ERR_MUX_TRANSPORT_CLOSED' })
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_TRANSPORT_CLOSED' })
    expect(session.closed).toBe(true)
    expect(() => session.openStream()).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_SESSION_CLOSED' }))
  })

  test('credit is returned only when the application reads', async () => {
    const { session, peer } = await setup('server', { windowAutoTuning: false })
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    const stream = await accepted
    stream.pause()
    for (let i = 0; i < 4; i++) peer.data(1, Buffer.alloc(65_536, i))
    await peer.sync()
    await waitFor(() => stream.bufferedBytes === 262_144, { what: 'the whole window buffered' })
    expect(session.stats.bufferedBytes).toBe(262_144)
    expect(peer.frames.filter(isWU(1, 0)).filter((f) => f.length > 0)).toEqual([])
    // reading the first 32 KiB is below a quarter of the window: still no credit
    expect(stream.read(32_768)).toHaveLength(32_768)
    await peer.sync()
    expect(peer.frames.filter((f) => isWU(1, 0)(f) && f.length > 0)).toEqual([])
    expect(stream.read(32_768)).toHaveLength(32_768)
    const update = await peer.frame((f) => isWU(1, 0)(f) && f.length > 0, 'window update after reads')
    expect(update.length).toBe(65_536)
    expect(stream.bufferedBytes).toBe(196_608)
  })

  test('a writer blocked on a zero window is woken by a WINDOW_UPDATE', async () => {
    const { session, peer } = await setup('client', { windowAutoTuning: false })
    const stream = open(session)
    let written = false
    stream.write(Buffer.alloc(300_000, 1), () => { written = true })
    await waitFor(() => peer.dataBytes(1) === 262_144, { what: 'a full window of data' })
    await peer.sync()
    expect(peer.dataBytes(1)).toBe(262_144)
    expect(written).toBe(false)
    expect(session.stats.windowStalls).toBe(1)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.ACK, 1, 100_000)
    await waitFor(() => written, { what: 'the write callback' })
    // The callback means handed to our socket, not received: wait for the peer to have read the rest.
    await waitFor(() => peer.dataBytes(1) >= 300_000, { what: 'the rest of the write at the peer' })
    await peer.sync()
    expect(peer.dataBytes(1)).toBe(300_000)
  })

  test('100,000 frames in one chunk are handled iteratively', async () => {
    const { session, peer, socket } = await setup('server')
    const peaks = samplePeaks(session, socket)
    const n = 100_000
    peer.socket.write(pings(n))
    await waitFor(() => peer.frames.filter((f) => f.type === FRAME_TYPE.PING && (f.flags & FLAG.ACK) === FLAG.ACK).length >= n, { what: `${n} pongs`, timeoutMs: 30_000, intervalMs: 20 })
    expect(session.closed).toBe(false)
    // A peer that reads gets every answer, yet they never pile up past the cap inside one chunk either.
    expect(peaks.queued).toBeLessThanOrEqual(MUX_SESSION_DEFAULTS.maxQueuedControlFrames + 1)
  })

  test('a peer that stops reading and sends 100,000 PINGs is cut off with SLK_ERR_MUX_CONTROL_FLOOD; memory stays bounded', async () => {
    const cap = MUX_SESSION_DEFAULTS.maxQueuedControlFrames
    const { session, peer, socket } = await setup('server', { windowAutoTuning: false, closeGraceMs: 100 })
    await blockOurWrites(session, peer, socket)
    const baseline = socket.writableLength
    const peaks = samplePeaks(session, socket)
    const closed = closedWith(session)
    // 1,000 batches of 100 across turns of the event loop, so they reach us in many reads, each small
    // enough to be answered within its own tick: only holding answers across reads makes this abort.
    for (let batch = 0; batch < 1000 && !session.closed; batch++) {
      peer.socket.write(pings(100, batch * 100))
      await new Promise<void>((resolve) => { setImmediate(resolve) })
    }
    const err = await closed
    expect(err).toBeInstanceOf(MuxError)
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_CONTROL_FLOOD', closeReason: 'protocol-error' })
    expect((err as Error).message).toBe(`peer kept sending PINGs while not reading our answers: maxQueuedControlFrames (${cap}) answers already wait for the transport to drain`)
    expect(session.stats.protocolErrors).toBe(1)
    expect(peaks.queued).toBeLessThanOrEqual(cap)
    // The 100,000 answers are 1.2 MB; only cap + 1 of them and the GoAway ever reached the transport's buffer.
    expect(peaks.buffered - baseline).toBeLessThanOrEqual((cap + 2) * 12)
    expect(session.stats.queuedControlFrames).toBe(0)
  })

  test('SYNs that we ACK count against maxQueuedControlFrames: a non-reading peer opening and resetting streams is cut off', async () => {
    const { session, peer, socket } = await setup('server', { windowAutoTuning: false, closeGraceMs: 100, maxQueuedControlFrames: 64 })
    await blockOurWrites(session, peer, socket)
    const peaks = samplePeaks(session, socket)
    const closed = closedWith(session)
    const frames: Buffer[] = []
    for (let id = 3; id < 3 + 2 * 1000; id += 2) {
      frames.push(encodeHeader(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, id, 0), encodeHeader(FRAME_TYPE.WINDOW_UPDATE, FLAG.RST, id, 0))
    }
    peer.socket.write(Buffer.concat(frames))
    const err = await closed
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_CONTROL_FLOOD', closeReason: 'protocol-error' })
    expect((err as Error).message).toBe('peer kept sending SYNs while not reading our answers: maxQueuedControlFrames (64) answers already wait for the transport to drain')
    // Stream 1 (the one filling the transport), then 64 of the 1,000: the 65th SYN was one too many.
    expect(session.stats.streamsAcceptedTotal).toBe(65)
    expect(peaks.queued).toBeLessThanOrEqual(64)
  })

  test('SYNs that we refuse with RST count against maxQueuedControlFrames too', async () => {
    const { session, peer, socket } = await setup('server', { windowAutoTuning: false, closeGraceMs: 100, maxQueuedControlFrames: 64, maxStreams: 1 })
    await blockOurWrites(session, peer, socket)
    const closed = closedWith(session)
    const frames: Buffer[] = []
    for (let id = 3; id < 3 + 2 * 1000; id += 2) frames.push(encodeHeader(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, id, 0))
    peer.socket.write(Buffer.concat(frames))
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_CONTROL_FLOOD' })
    // 64 refusals queued; the 65th SYN was over the cap and the rest of the chunk was never parsed.
    expect(session.stats.streamsRefusedTotal).toBe(64)
  })

  test('answers held while the transport is blocked go out in order once it drains', async () => {
    const { session, peer, socket } = await setup('server', { windowAutoTuning: false })
    await blockOurWrites(session, peer, socket)
    peer.socket.write(pings(500))
    await waitFor(() => session.stats.queuedControlFrames === 500, { what: '500 answers held' })
    peer.socket.resume()
    await waitFor(() => peer.dataBytes(1) === 8 * MiB && peer.frames.filter((f) => f.type === FRAME_TYPE.PING).length === 500, { what: 'the data, then every answer', timeoutMs: 30_000, intervalMs: 20 })
    const answers = peer.frames.filter((f) => f.type === FRAME_TYPE.PING).map((f) => f.length)
    expect(answers).toEqual(Array.from({ length: 500 }, (_, i) => i))
    expect(session.stats.queuedControlFrames).toBe(0)
    expect(session.closed).toBe(false)
  })

  test('a stream the peer never answers is reset after streamOpenTimeoutMs with SLK_ERR_MUX_STREAM_OPEN_TIMEOUT', async () => {
    const { session, peer } = await setup('client', { streamOpenTimeoutMs: 1000, windowAutoTuning: false })
    const { session: untimed, peer: untimedPeer } = await setup('client', { streamOpenTimeoutMs: 0, windowAutoTuning: false })
    // Answered by an ACK, and by data without an ACK: both stop the clock.
    const acked = open(session)
    const fed = open(session)
    await peer.frame(isWU(3, FLAG.SYN), 'SYN for stream 3')
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.ACK, 1, 0)
    peer.data(3, Buffer.from('no ACK, but data'))
    await peer.sync()
    // Opened after 1 and 3, so its deadline comes after theirs: when it fires theirs have passed.
    const silent = session.openStream()
    const errored = once(silent, 'error')
    const neverTimed = open(untimed)
    await untimedPeer.frame(isWU(1, FLAG.SYN), 'SYN on the untimed session')
    const [err] = await errored as [MuxError]
    expect(err).toBeInstanceOf(MuxError)
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_STREAM_OPEN_TIMEOUT' })
    expect(err.message).toBe('peer did not answer the SYN of stream 5 within 1000 ms')
    await peer.frame(isWU(5, FLAG.RST), 'RST for stream 5')
    expect(acked.destroyed).toBe(false)
    expect(fed.destroyed).toBe(false)
    expect(peer.frames.some((f) => (f.streamId === 1 || f.streamId === 3) && (f.flags & FLAG.RST) === FLAG.RST)).toBe(false)
    expect(session.stats.streamsOpen).toBe(2)
    expect(session.closed).toBe(false)
    // streamOpenTimeoutMs: 0 disables it: the same wait left the untimed stream alone.
    expect(neverTimed.destroyed).toBe(false)
    // A late answer for the reset stream is drained like any frame crossing a close.
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.ACK, 5, 0)
    await peer.sync()
    expect(session.closed).toBe(false)
  })

  test('an unknown frame type or version closes the session with its code', async () => {
    const { session, peer } = await setup('server')
    const closed = closedWith(session)
    const bad = encodeHeader(FRAME_TYPE.PING, 0, 0, 0)
    bad[1] = 9
    peer.socket.write(bad)
    expect(await closed).toMatchObject({ code: 'SLK_ERR_MUX_FRAME_TYPE' })
    await peer.frame(isGoAway(1), 'GoAway protocol-error')
  })
})

describe('flow control credit and window auto-tuning against a raw peer', () => {
  const KiB = 1024
  const isCredit = (f: RawFrame): boolean => f.type === FRAME_TYPE.WINDOW_UPDATE && f.streamId === 1 && f.flags === 0
  const credits = (peer: RawPeer): number[] => peer.frames.filter(isCredit).map((f) => f.length)

  /**
   * Opens stream 1 from the peer and reads it in flowing mode; `feed` sends one DATA frame and waits until
   * it was read and every frame we sent for it arrived. Credit is due when a read crosses the threshold,
   * so the tests feed frames of the threshold's size, each read whole before the next goes out.
   */
  async function readingStream (session: MuxSession, peer: RawPeer): Promise<{ stream: MuxStream, feed: (bytes: number) => Promise<void> }> {
    const accepted = nextStream(session)
    peer.send(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    const stream = await accepted
    stream.on('error', noop)
    let read = 0
    let sent = 0
    stream.on('data', (chunk: Buffer) => { read += chunk.length })
    const feed = async (bytes: number): Promise<void> => {
      peer.data(1, Buffer.alloc(bytes, 7))
      sent += bytes
      await waitFor(() => read === sent, { what: `${sent} bytes read` })
      await peer.sync()
    }
    return { stream, feed }
  }

  test('credit goes back once a quarter of the window was read, not half', async () => {
    const { session, peer } = await setup('server', { windowAutoTuning: false }, false)
    const { stream, feed } = await readingStream(session, peer)
    await feed(64 * KiB - 1)
    expect(credits(peer)).toEqual([])
    await feed(1)
    expect(credits(peer)).toEqual([64 * KiB])
    await feed(100 * KiB)
    expect(credits(peer)).toEqual([64 * KiB, 100 * KiB])
    expect(stream.receiveWindowBytes).toBe(256 * KiB)
  })

  test('auto-tuning quadruples a window whose half was read within one RTT, doubles it within two, leaves it beyond, and stops at maxStreamWindowBytes', async () => {
    const clock = createManualClock()
    const { session, peer } = await setup('server', { maxStreamWindowBytes: 3 * MiB }, false, { clock })
    // The RTT the session measures with its first ping: 100 ms on the manual clock.
    peer.answerPings = false
    const ping = await peer.frame((f) => f.type === FRAME_TYPE.PING && (f.flags & FLAG.SYN) === FLAG.SYN, 'the session\'s first ping')
    clock.advance(100)
    peer.send(FRAME_TYPE.PING, FLAG.ACK, 0, ping.length)
    await waitFor(() => session.stats.rttMs === 100, { what: 'the RTT measured' })

    const { stream, feed } = await readingStream(session, peer)
    // Half of 256 KiB read at once (within one RTT): ×4, the growth riding on the second quarter's credit.
    await feed(64 * KiB)
    await feed(64 * KiB)
    expect(credits(peer)).toEqual([64 * KiB, 64 * KiB + 768 * KiB])
    expect(stream.receiveWindowBytes).toBe(1 * MiB)
    // Half of 1 MiB over 150 ms (between one and two RTTs): ×2.
    clock.advance(150)
    await feed(256 * KiB)
    await feed(256 * KiB)
    expect(credits(peer).slice(2)).toEqual([256 * KiB, 256 * KiB + 1 * MiB])
    expect(stream.receiveWindowBytes).toBe(2 * MiB)
    // Half of 2 MiB over 250 ms (more than two RTTs): the reader, not the window, sets the pace.
    clock.advance(250)
    await feed(512 * KiB)
    await feed(512 * KiB)
    expect(credits(peer).slice(4)).toEqual([512 * KiB, 512 * KiB])
    expect(stream.receiveWindowBytes).toBe(2 * MiB)
    // Fast again: ×4 would be 8 MiB, the cap holds it at 3 MiB.
    await feed(512 * KiB)
    await feed(512 * KiB)
    expect(credits(peer).slice(6)).toEqual([512 * KiB, 512 * KiB + 1 * MiB])
    expect(stream.receiveWindowBytes).toBe(3 * MiB)
    expect(session.stats.bufferedBytes).toBe(0)
  })
})
