import { once } from 'node:events'
import type { Socket } from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { createManualClock, socketPair } from '@spokelink/testkit'
import type { ManualClock } from '@spokelink/testkit'
import {
  DATA_STREAM_ACCEPTOR_MUX_OPTIONS,
  DATA_STREAM_DEFAULTS,
  STREAM_STATUS,
  acceptDataStream,
  createMuxSession,
  encodeFramedJson,
  openDataStream,
  readExactly,
  readStreamStatus,
  waitForFirstBytes,
} from '../src/index.js'
import type { AcceptedDataStream, MuxSession, MuxSessionOptions, MuxStream } from '../src/index.js'

const STATUS_TIMEOUT_MS = 10_000
const HEADER_TIMEOUT_MS = 10_000

/** A TCP pair whose ends are both destroyed when the test ends. */
async function pair (): Promise<[Socket, Socket]> {
  const ends = await socketPair({ allowHalfOpen: true })
  onTestFinished(() => { for (const end of ends) end.destroy() })
  return ends
}

/**
 * An exit-node-like opener and an agent-like acceptor: two muxes over real TCP on 127.0.0.1, each on
 * its own manual clock, with nothing else armed (no keepalive, no auto-tuning ping).
 */
async function tunnel (openerOptions: MuxSessionOptions = {}): Promise<{ opener: MuxSession, acceptor: MuxSession, openerClock: ManualClock, acceptorClock: ManualClock }> {
  const [a, b] = await pair()
  const openerClock = createManualClock()
  const acceptorClock = createManualClock()
  const quiet = { keepaliveIntervalMs: 0, windowAutoTuning: false }
  const opener = createMuxSession(a, 'server', { ...quiet, streamOpenTimeoutMs: 0, ...openerOptions }, { clock: openerClock })
  const acceptor = createMuxSession(b, 'client', { ...quiet, ...DATA_STREAM_ACCEPTOR_MUX_OPTIONS }, { clock: acceptorClock })
  // Streams a test leaves open are destroyed with the sessions at its end; that is no failure.
  for (const mux of [opener, acceptor]) {
    const openStream = mux.openStream.bind(mux)
    mux.openStream = () => openStream().on('error', () => {})
    mux.on('stream', (stream: MuxStream) => { stream.on('error', () => {}) })
  }
  onTestFinished(() => { opener.abort(); acceptor.abort() })
  return { opener, acceptor, openerClock, acceptorClock }
}

/** Resolves on 'close' whether or not an 'error' came first (`once` would reject on it). */
async function closed (stream: MuxStream): Promise<void> {
  await new Promise((resolve) => { stream.once('close', resolve) })
}

async function nextStream (mux: MuxSession): Promise<MuxStream> {
  const [stream] = await once(mux, 'stream') as [MuxStream]
  return stream
}

async function accept (mux: MuxSession, clock: ManualClock): Promise<AcceptedDataStream> {
  const stream = await nextStream(mux)
  return acceptDataStream(stream, { headerTimeoutMs: HEADER_TIMEOUT_MS, headerTimeoutError: () => new Error('header late'), clock })
}

function open (stream: MuxStream, client: Socket, clock: ManualClock): Promise<Error | undefined> {
  return openDataStream(stream, client, { upstream: 'prometheus', statusTimeoutMs: STATUS_TIMEOUT_MS, statusTimeoutError: () => Object.assign(new Error('status late'), { code: 'TEST_STATUS_LATE' }), clock })
}

describe('the data-stream handshake, both ends in-process', () => {
  test('a request and its answer cross with no timer firing: header, request, status and answer arrive byte-exact', async () => {
    const { opener, acceptor, openerClock, acceptorClock } = await tunnel()
    const [client, clientAtExit] = await pair()
    const [upstreamAtAgent, upstream] = await pair()
    client.write('GET /federate\r\n\r\n')
    client.end()
    await waitForFirstBytes(clientAtExit, DATA_STREAM_DEFAULTS.firstBytesHoldMs, openerClock)
    expect(clientAtExit.readableLength).toBeGreaterThan(0)
    const opened = open(opener.openStream(), clientAtExit, openerClock)
    const accepted = await accept(acceptor, acceptorClock)
    expect(accepted.upstream).toBe('prometheus')
    const relayed = accepted.relay(upstreamAtAgent)
    const request = await readExactly(upstream, 17)
    expect(request.toString()).toBe('GET /federate\r\n\r\n')
    upstream.end('HTTP/1.0 200 OK\r\n\r\nup 1\n')
    const answer: Buffer[] = []
    for await (const chunk of client) answer.push(chunk as Buffer)
    expect(Buffer.concat(answer).toString()).toBe('HTTP/1.0 200 OK\r\n\r\nup 1\n')
    expect(await opened).toBeUndefined()
    expect(await relayed).toBeUndefined()
    // Status and ACK went with the answer: their holds were armed and cancelled, none fired.
    expect(acceptorClock.now()).toBe(0)
    expect(acceptorClock.pendingTimers).toBe(0)
  })

  test('a silent client is held firstBytesHoldMs, not a millisecond less', async () => {
    const clock = createManualClock()
    const [, clientAtExit] = await pair()
    let released = false
    const held = waitForFirstBytes(clientAtExit, DATA_STREAM_DEFAULTS.firstBytesHoldMs, clock).then(() => { released = true })
    expect(clock.pendingTimers).toBe(1)
    clock.advance(DATA_STREAM_DEFAULTS.firstBytesHoldMs - 1)
    // Let every promise reaction run: a released hold would have set the flag by now.
    await new Promise(setImmediate)
    expect(released).toBe(false)
    clock.advance(1)
    await held
    expect(released).toBe(true)
    expect(clock.pendingTimers).toBe(0)
  })

  test('a client that sends during the hold releases it at once and cancels the timer', async () => {
    const clock = createManualClock()
    const [client, clientAtExit] = await pair()
    const held = waitForFirstBytes(clientAtExit, DATA_STREAM_DEFAULTS.firstBytesHoldMs, clock)
    client.write('x')
    await held
    expect(clock.now()).toBe(0)
    expect(clock.pendingTimers).toBe(0)
    expect(clientAtExit.read(1)).toEqual(Buffer.from('x'))
  })

  test('a silent upstream gets its OK status (with the ACK) after okStatusHoldMs, and only then', async () => {
    const { opener, acceptor, acceptorClock } = await tunnel()
    const [upstreamAtAgent] = await pair()
    const stream = opener.openStream()
    stream.write(encodeFramedJson({ upstream: 'prometheus' }))
    const accepted = await accept(acceptor, acceptorClock)
    void accepted.relay(upstreamAtAgent)
    // The status hold and the ACK delay are armed; nothing has gone out yet.
    expect(acceptorClock.pendingTimers).toBe(2)
    acceptorClock.advance(DATA_STREAM_DEFAULTS.okStatusHoldMs - 1)
    expect(acceptor.stats.bytesOut).toBe(0)
    acceptorClock.advance(1)
    await readStreamStatus(stream)
    expect(acceptor.stats.bytesOut).toBe(1)
    // The ACK rode with the status: its own timer is gone.
    expect(acceptorClock.pendingTimers).toBe(0)
  })

  test('an acceptor that never answers sends its ACK alone after ackDelayMs, and not before', async () => {
    const openTimeoutMs = 5000
    const { opener, acceptor, openerClock, acceptorClock } = await tunnel({ streamOpenTimeoutMs: openTimeoutMs })
    // Two streams the acceptor reads the header of and never answers.
    const early = opener.openStream()
    early.write(encodeFramedJson({ upstream: 'prometheus' }))
    await accept(acceptor, acceptorClock)
    acceptorClock.advance(DATA_STREAM_DEFAULTS.ackDelayMs - 1)
    // A ping round trip from the acceptor: anything it sent before has reached the opener.
    await acceptor.ping({ timeoutMs: 1000 })
    const earlyClosed = closed(early)
    openerClock.advance(openTimeoutMs)
    await earlyClosed
    expect(early.errored).toMatchObject({ code: 'SLK_ERR_MUX_STREAM_OPEN_TIMEOUT' })

    const late = opener.openStream()
    late.write(encodeFramedJson({ upstream: 'prometheus' }))
    await accept(acceptor, acceptorClock)
    acceptorClock.advance(DATA_STREAM_DEFAULTS.ackDelayMs)
    await acceptor.ping({ timeoutMs: 1000 })
    openerClock.advance(openTimeoutMs)
    expect(late.destroyed).toBe(false)
  })

  test('the ACK delay outlasts the status hold, so a silent upstream still costs one message', () => {
    expect(DATA_STREAM_ACCEPTOR_MUX_OPTIONS.ackDelayMs).toBeGreaterThan(DATA_STREAM_DEFAULTS.okStatusHoldMs)
  })

  test('a status not back within statusTimeoutMs fails the opener with the caller\'s error; the client is closed', async () => {
    const { opener, acceptor, openerClock, acceptorClock } = await tunnel()
    const [client, clientAtExit] = await pair()
    client.write('GET / HTTP/1.0\r\n\r\n')
    const opened = open(opener.openStream(), clientAtExit, openerClock)
    await accept(acceptor, acceptorClock)
    openerClock.advance(STATUS_TIMEOUT_MS - 1)
    expect(clientAtExit.destroyed).toBe(false)
    openerClock.advance(1)
    await expect(opened).resolves.toMatchObject({ code: 'TEST_STATUS_LATE' })
    expect(clientAtExit.destroyed).toBe(true)
  })

  test('a refusal reaches the opener as SLK_ERR_PROTO_UPSTREAM_REFUSED with the reason', async () => {
    const { opener, acceptor, openerClock, acceptorClock } = await tunnel()
    const [client, clientAtExit] = await pair()
    client.write('GET / HTTP/1.0\r\n\r\n')
    const opened = open(opener.openStream(), clientAtExit, openerClock)
    const accepted = await accept(acceptor, acceptorClock)
    accepted.refuse(STREAM_STATUS.DIAL_FAILED, 'cannot reach upstream prometheus: ECONNREFUSED')
    await expect(opened).resolves.toMatchObject({ code: 'SLK_ERR_PROTO_UPSTREAM_REFUSED', message: 'agent refused the stream: cannot reach upstream prometheus: ECONNREFUSED' })
  })

  test('a stream with no header is reset after headerTimeoutMs with the caller\'s error', async () => {
    const { opener, acceptor, acceptorClock } = await tunnel()
    const stream = opener.openStream()
    const arrived = await nextStream(acceptor)
    const accepting = acceptDataStream(arrived, { headerTimeoutMs: HEADER_TIMEOUT_MS, headerTimeoutError: () => Object.assign(new Error('late'), { code: 'TEST_HEADER_LATE' }), clock: acceptorClock })
    acceptorClock.advance(HEADER_TIMEOUT_MS - 1)
    expect(arrived.destroyed).toBe(false)
    acceptorClock.advance(1)
    await expect(accepting).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_CLOSED', cause: { code: 'TEST_HEADER_LATE' } })
    await closed(stream)
    expect(stream.errored).toMatchObject({ code: 'SLK_ERR_MUX_STREAM_RESET' })
  })

  test('headers: maxHeaderBytes is read (and judged), one byte more is refused before it is read', async () => {
    const { opener, acceptor, acceptorClock } = await tunnel()
    const max = DATA_STREAM_DEFAULTS.maxHeaderBytes
    expect(max).toBe(16_384)
    const atLimit = opener.openStream()
    atLimit.write(encodeFramedJson({ upstream: 'x'.repeat(max - '{"upstream":""}'.length) }))
    await expect(accept(acceptor, acceptorClock)).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_HEADER_INVALID' })
    const over = opener.openStream()
    over.write(encodeFramedJson({ upstream: 'x'.repeat(max + 1 - '{"upstream":""}'.length) }))
    await expect(accept(acceptor, acceptorClock)).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_HEADER_TOO_LARGE', message: `peer sent a ${max + 1}-byte header; the limit is ${max} bytes` })
  })
})
