/**
 * End-to-end tunnel tests on real loopback sockets: the exit-node and the agent run in-process (from
 * source), each with its own pino logger (into a buffer, printed when a test fails) and its own
 * prom-client Registry. Upstreams are real TCP servers; every transfer is checked byte-exact (sha256).
 */
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import { WebSocketServer } from 'ws'
import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import type { Logger } from 'pino'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken, SpokesConfig } from '@spokelink/auth'
import {
  MUX_SESSION_DEFAULTS,
  PROTOCOL_NAME,
  ProtocolError,
  WEBSOCKET_DUPLEX_DEFAULTS,
  createMuxSession,
  createWebSocketDuplex,
  encodeFramedJson,
  parseHello,
  readFramedJson,
  readStreamStatus,
  writeFramedJson,
} from '@spokelink/protocol'
import type { MuxStream } from '@spokelink/protocol'
import { createLogCapture, deterministicSource, expectedSha256, freePort, hashStream, sha256Hex, spokesYaml, startEchoServer, waitFor } from '@spokelink/testkit'
import type { EchoServer } from '@spokelink/testkit'
import { listen, startAgent, startExitNode } from './in-process-tunnel.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const SPOKE = 'orion'

// --- helpers ------------------------------------------------------------------------------------

/** Everything the exit-nodes and agents of the current test logged (pino JSON lines). */
const logs = createLogCapture()
beforeEach(() => { logs.clear() })

function testLogger (name: string): Logger {
  return logs.logger(name)
}

/** Prints the collected logs when the current test fails, so a failure can be read without a rerun. */
function dumpLogsOnFailure (): void {
  onTestFailed(() => {
    process.stderr.write(`--- spokelink logs of the failed test ---\n${logs.text()}`)
  })
}

interface SpokeSpec {
  name?: string
  tokens: CreatedSpokeToken[]
  ports: Array<{ upstream: string, port: number }>
}

function spokesConfig (spokes: SpokeSpec[]): SpokesConfig {
  return parseSpokesConfig(spokesYaml(spokes.map((spoke) => ({ ...spoke, name: spoke.name ?? SPOKE }))), 'test')
}

/** One spoke with one token and one `prometheus` port in front of `upstream`: returns the data-plane port once the agent is connected. */
async function tunnelTo (upstream: net.Server): Promise<number> {
  trackSockets(upstream)
  const upstreamPort = await listen(upstream)
  const token = createSpokeToken()
  const dataPort = await freePort()
  const { url } = await startExitNode(spokesConfig([{ tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), testLogger('exit-node'))
  await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }] }, testLogger('agent'))
  return dataPort
}

/** Tracks every socket a test server accepted so cleanup can destroy them. */
function trackSockets (server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  onTestFinished(() => { for (const socket of sockets) socket.destroy() })
  return sockets
}

/** An upstream that echoes every byte and half-closes after the client did; closed when the test finishes. */
async function startEchoUpstream (): Promise<EchoServer> {
  const echo = await startEchoServer()
  onTestFinished(async () => { await echo.close() })
  return echo
}

/** Everything `socket` sends until its end. */
async function readAll (socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Connects to a data-plane port on 127.0.0.1 with half-open allowed. */
async function connectTcp (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect', { signal: AbortSignal.timeout(30_000) })
  return socket
}

/** Sends `payload`, half-closes, and resolves with everything the peer sent back until its end. */
async function roundTrip (port: number, payload: Buffer): Promise<Buffer> {
  const socket = await connectTcp(port)
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const ended = once(socket, 'end', { signal: AbortSignal.timeout(30_000) })
  socket.end(payload)
  await ended
  socket.destroy()
  return Buffer.concat(chunks)
}

/** Resolves with the error a TCP connect to `port` fails with (ECONNREFUSED expected); a connect is an error too. */
async function connectError (port: number): Promise<NodeJS.ErrnoException> {
  const socket = net.connect({ host: '127.0.0.1', port })
  onTestFinished(() => { socket.destroy() })
  // No timer of our own: a refused loopback connect fails at once, and the test's timeout covers a hang.
  return once(socket, 'connect').then(
    () => Object.assign(new Error(`connected to 127.0.0.1:${port}`), { code: 'CONNECTED' }),
    (err: unknown) => err as NodeJS.ErrnoException
  )
}

// --- tests --------------------------------------------------------------------------------------

describe('tunnel (in-process exit-node and agent)', () => {
  test('1 GiB client → upstream is sha256-exact, and the upstream answers after the client half-closed', async () => {
    dumpLogsOnFailure()
    const bytes = GiB
    const seed = 11
    // The upstream hashes everything until EOF, then answers with what it saw and 1 MiB more.
    const received: Array<Promise<{ sha256: string, bytes: number }>> = []
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      // Not a plain for-await: that destroys the socket at EOF, and this upstream still has to answer.
      const result = hashStream(socket.iterator({ destroyOnReturn: false }))
      received.push(result)
      void result.then(async (seen) => {
        socket.write(`${JSON.stringify(seen)}\n`)
        await pipeline(deterministicSource(MiB, 12), socket)
      }).catch(() => { /* asserted through `received` */ })
    })
    const dataPort = await tunnelTo(server)

    const client = await connectTcp(dataPort)
    const answer = readAll(client)
    await pipeline(deterministicSource(bytes, seed), client) // ends our write side only (allowHalfOpen)
    expect(received).toHaveLength(1)
    const seen = await received[0]
    expect(seen).toEqual({ sha256: expectedSha256(bytes, seed), bytes })
    const line = Buffer.from(`${JSON.stringify(seen)}\n`)
    const back = await answer
    expect(back.length).toBe(line.length + MiB)
    expect(back.subarray(0, line.length).toString('utf8')).toBe(line.toString('utf8'))
    expect(sha256Hex(back.subarray(line.length))).toBe(expectedSha256(MiB, 12))
  })

  // One 1 GiB run (above) is the integrity test at scale; this direction is the same code path and
  // 64 MiB (hundreds of window updates, a thousand WebSocket messages) shows it as well in a sixteenth of the time.
  test('64 MiB upstream → client is sha256-exact', async () => {
    dumpLogsOnFailure()
    const bytes = 64 * MiB
    const seed = 21
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => { /* asserted by the client's hash */ })
      pipeline(deterministicSource(bytes, seed), socket).catch(() => { /* as above */ })
    })
    const dataPort = await tunnelTo(server)

    const client = await connectTcp(dataPort)
    client.end()
    expect(await hashStream(client)).toEqual({ sha256: expectedSha256(bytes, seed), bytes })
  })

  test('half-close: the upstream sees EOF first and its later answer reaches the client completely', async () => {
    dumpLogsOnFailure()
    const events: string[] = []
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.on('end', () => {
        const request = Buffer.concat(chunks).toString('utf8')
        events.push(`upstream got EOF after ${JSON.stringify(request)}`)
        // Answer only after EOF: 4 MiB so the answer spans many frames and window updates.
        pipeline(deterministicSource(4 * MiB, 31), socket).catch(() => { /* asserted by the client's hash */ })
      })
    })
    const dataPort = await tunnelTo(server)

    const client = await connectTcp(dataPort)
    const answer = hashStream(client)
    client.end('GET /federate\n')
    expect(await answer).toEqual({ sha256: expectedSha256(4 * MiB, 31), bytes: 4 * MiB })
    expect(events).toEqual(['upstream got EOF after "GET /federate\\n"'])
  })

  test('an upstream that speaks first reaches a client that waits for its greeting; the conversation goes on', async () => {
    dumpLogsOnFailure()
    const server = net.createServer((socket) => {
      socket.write('220 spoke ready\r\n')
      socket.on('data', (chunk: Buffer) => {
        if (chunk.toString() === 'QUIT\r\n') socket.end('221 bye\r\n')
      })
    })
    const dataPort = await tunnelTo(server)
    const client = await connectTcp(dataPort)
    const received: Buffer[] = []
    client.on('data', (chunk: Buffer) => received.push(chunk))
    await waitFor(() => Buffer.concat(received).toString() === '220 spoke ready\r\n', { what: 'the greeting before the client said anything' })
    const ended = once(client, 'end')
    client.write('QUIT\r\n')
    await ended
    expect(Buffer.concat(received).toString()).toBe('220 spoke ready\r\n221 bye\r\n')
  })

  test('100 concurrent connections each echo a distinct 64 KiB payload byte-exact', async () => {
    dumpLogsOnFailure()
    const echo = await startEchoUpstream()
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{ tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), testLogger('exit-node'))
    await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echo.port }] }, testLogger('agent'))

    const payloads = Array.from({ length: 100 }, () => randomBytes(64 * 1024))
    const results = await Promise.all(payloads.map(async (payload) => roundTrip(dataPort, payload)))
    results.forEach((result, i) => {
      expect(result.length, `connection ${i}`).toBe(payloads[i]?.length)
      expect(result.equals(payloads[i] ?? Buffer.alloc(0)), `connection ${i} echoed other bytes`).toBe(true)
    })
    expect(echo.connections).toBe(100)
    const [session] = exitNode.sessions.sessionsOf(SPOKE)
    expect(session?.mux.stats.streamsOpenedTotal).toBe(100)
  })

  test('slow reader: buffers stay bounded, the upstream producer is blocked, and all 140 MB arrive sha256-exact', async () => {
    dumpLogsOnFailure()
    // Twice the in-flight bound asserted below (≈ 71 MB), so a producer that was never blocked fails it.
    const bytes = 140 * 1000 * 1000
    const seed = 41
    // `clientRead` is what the client has consumed; `handed - clientRead` is everything in flight
    // (sockets, WebSockets, both muxes), measured at each write of the producer, not on a timer.
    const producer = { handed: 0, writeReturnedFalse: 0, waiting: false, done: false, maxInFlight: 0 }
    let clientRead = 0
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => { /* asserted by the client's hash */ })
      void (async () => {
        for await (const chunk of deterministicSource(bytes, seed)) {
          const buf = chunk as Buffer
          producer.handed += buf.length
          producer.maxInFlight = Math.max(producer.maxInFlight, producer.handed - clientRead)
          if (!socket.write(buf)) {
            producer.writeReturnedFalse++
            producer.waiting = true
            await once(socket, 'drain')
            producer.waiting = false
          }
        }
        socket.end()
        producer.done = true
      })().catch(() => { /* as above */ })
    })
    trackSockets(server)
    const upstreamPort = await listen(server)
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{ tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), testLogger('exit-node'))
    await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }] }, testLogger('agent'))
    const session = exitNode.sessions.all()[0]
    if (session === undefined) throw new Error('no exit-node session')

    const client = await connectTcp(dataPort)
    client.pause()
    client.end()
    let maxBuffered = 0
    let maxClientBuffered = 0
    const sample = (): void => {
      maxBuffered = Math.max(maxBuffered, session.mux.stats.bufferedBytes)
      maxClientBuffered = Math.max(maxClientBuffered, client.readableLength)
    }
    const sampler = setInterval(sample, 5)
    onTestFinished(() => { clearInterval(sampler) })

    // The whole path fills up: the client holds bytes it does not read, the exit-node holds stream
    // data it cannot pass on, and the producer waits for 'drain'. From here nothing can move without
    // the client reading (no credit, no drain); the in-flight bound below holds for the whole run.
    await waitFor(() => producer.waiting && client.readableLength > 0 && session.mux.stats.bufferedBytes > 0, { timeoutMs: 60_000, what: 'the upstream producer to wait for drain with the tunnel full' })
    sample()
    // The exit-node never holds more than one stream window (the stream's receive window can at most
    // grow to maxStreamWindowBytes); everything else sits in bounded socket and WebSocket buffers.
    const exitNodeBound = MUX_SESSION_DEFAULTS.maxStreamWindowBytes
    expect(maxBuffered).toBeLessThanOrEqual(exitNodeBound)
    expect(producer.writeReturnedFalse).toBeGreaterThan(0)
    expect(producer.done).toBe(false)

    const hash = createHash('sha256')
    for await (const chunk of client) {
      hash.update(chunk as Buffer)
      clientRead += (chunk as Buffer).length
      sample()
    }
    expect({ sha256: hash.digest('hex'), bytes: clientRead }).toEqual({ sha256: expectedSha256(bytes, seed), bytes })
    clearInterval(sampler)
    // Everything in flight: ≤ 1 window + the two WebSocket duplex buffers of each side + kernel socket
    // buffers of three loopback connections (a few MiB each at most) — half the 140 MB pushed.
    const inFlightBound = MUX_SESSION_DEFAULTS.maxStreamWindowBytes + 4 * WEBSOCKET_DUPLEX_DEFAULTS.maxBufferedBytes + 3 * 16 * MiB
    expect(producer.maxInFlight, `at most ${producer.maxInFlight} bytes were in flight`).toBeLessThan(inFlightBound)
    expect(maxBuffered, `exit-node mux buffered at most ${maxBuffered} bytes`).toBeLessThanOrEqual(exitNodeBound)
    expect(maxClientBuffered, 'a paused socket reads at most one high-water mark').toBeLessThanOrEqual(4 * 64 * 1024)
    expect(producer.done).toBe(true)
  })

  test('two agent sessions of one spoke share the streams; losing one keeps the spoke up; losing both refuses at once', async () => {
    dumpLogsOnFailure()
    const echo = await startEchoUpstream()
    const tokenA = createSpokeToken()
    const tokenB = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{ tokens: [tokenA, tokenB], ports: [{ upstream: 'prometheus', port: dataPort }] }]), testLogger('exit-node'))
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: echo.port }]
    const agentA = await startAgent({ server: url, token: tokenA.token, upstreams, agentName: 'replica-a' }, testLogger('agent'))
    const agentB = await startAgent({ server: url, token: tokenB.token, upstreams, agentName: 'replica-b' }, testLogger('agent'))
    const sessions = exitNode.sessions.sessionsOf(SPOKE)
    expect(sessions.map((s) => s.agent).sort()).toEqual(['replica-a', 'replica-b'])

    // 20 connections held open at once: the least busy session gets each new stream.
    const held = await Promise.all(Array.from({ length: 20 }, async () => connectTcp(dataPort)))
    const echoed = await Promise.all(held.map(async (socket, i) => {
      const payload = Buffer.from(`held ${i}\n`)
      socket.write(payload)
      const [chunk] = await once(socket, 'data', { signal: AbortSignal.timeout(30_000) }) as [Buffer]
      return chunk.equals(payload)
    }))
    expect(echoed.every(Boolean)).toBe(true)
    expect(sessions.map((s) => s.activeStreams).sort()).toEqual([10, 10])
    for (const socket of held) socket.destroy()
    await waitFor(() => sessions.every((s) => s.activeStreams === 0), { what: 'the held streams to close' })

    // 20 sequential connections are spread too (not all on the first session).
    const openedBefore = sessions.map((s) => s.mux.stats.streamsOpenedTotal)
    for (let i = 0; i < 20; i++) {
      const payload = randomBytes(1024)
      expect((await roundTrip(dataPort, payload)).equals(payload)).toBe(true)
    }
    const openedSequential = sessions.map((s, i) => s.mux.stats.streamsOpenedTotal - (openedBefore[i] ?? 0))
    expect(openedSequential.reduce((a, b) => a + b)).toBe(20)
    for (const opened of openedSequential) expect(opened).toBeGreaterThanOrEqual(5)

    await agentA.close({ graceMs: 0 })
    await waitFor(() => exitNode.sessions.sessionsOf(SPOKE).length === 1, { what: 'the exit-node to drop replica-a' })
    expect(exitNode.sessions.sessionsOf(SPOKE)[0]?.agent).toBe('replica-b')
    for (let i = 0; i < 5; i++) {
      const payload = randomBytes(4096)
      expect((await roundTrip(dataPort, payload)).equals(payload)).toBe(true)
    }

    await agentB.close({ graceMs: 0 })
    await waitFor(() => !exitNode.sessions.isConnected(SPOKE), { what: 'the exit-node to drop replica-b' })
    // At once: the data-plane port is closed by the time the spoke has no session (no retry, no wait).
    expect((await connectError(dataPort)).code).toBe('ECONNREFUSED')
  })

  test('reconnect: the agent comes back by itself to a new exit-node on the same port and traffic flows again', async () => {
    dumpLogsOnFailure()
    const echo = await startEchoUpstream()
    const token = createSpokeToken()
    const dataPort = await freePort()
    const spokes = spokesConfig([{ tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }])
    const first = await startExitNode(spokes, testLogger('exit-node'))
    const agent = await startAgent({ server: first.url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echo.port }] }, testLogger('agent'))
    const before = randomBytes(100_000)
    expect((await roundTrip(dataPort, before)).equals(before)).toBe(true)

    const disconnected = once(agent, 'disconnected', { signal: AbortSignal.timeout(30_000) })
    await first.exitNode.close()
    await disconnected
    expect((await connectError(dataPort)).code).toBe('ECONNREFUSED')

    const reconnected = once(agent, 'connected', { signal: AbortSignal.timeout(30_000) })
    const second = await startExitNode(spokes, testLogger('exit-node'), { port: first.port })
    const [info] = await reconnected as [{ spoke: string, ports: Array<{ port: number }> }]
    expect(info.spoke).toBe(SPOKE)
    expect(info.ports.map((p) => p.port)).toEqual([dataPort])
    expect(second.exitNode.sessions.isConnected(SPOKE)).toBe(true)
    const after = randomBytes(100_000)
    expect((await roundTrip(dataPort, after)).equals(after)).toBe(true)
  })

  test('an upstream the agent does not offer gets no port, and the agent refuses a header naming it', async () => {
    dumpLogsOnFailure()
    const echo = await startEchoUpstream()
    const token = createSpokeToken()
    const promPort = await freePort()
    const alertPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{
      tokens: [token],
      ports: [{ upstream: 'prometheus', port: promPort }, { upstream: 'alertmanager', port: alertPort }],
    }]), testLogger('exit-node'))
    const connected = await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echo.port }] }, testLogger('agent'))
    expect(connected.state).toBe('connected')
    expect(exitNode.sessions.sessionsOf(SPOKE)[0]?.ports.map((p) => p.upstream)).toEqual(['prometheus'])
    expect((await connectError(alertPort)).code).toBe('ECONNREFUSED')
    const payload = randomBytes(1000)
    expect((await roundTrip(promPort, payload)).equals(payload)).toBe(true)

    // A fake exit-node that, after the hello, asks the agent for upstreams it does not have.
    const httpServer = http.createServer()
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => protocols.has(PROTOCOL_NAME) ? PROTOCOL_NAME : false })
    // The fake side's work is one promise the test awaits: its findings are asserted here, not inside it.
    let resolveFake: ((side: { helloUpstreams: string[], asked: Array<Promise<unknown>> }) => void) | undefined
    let rejectFake: ((err: unknown) => void) | undefined
    const fakeSide = new Promise<{ helloUpstreams: string[], asked: Array<Promise<unknown>> }>((resolve, reject) => { resolveFake = resolve; rejectFake = reject })
    httpServer.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        const mux = createMuxSession(createWebSocketDuplex(ws), 'server', { keepaliveIntervalMs: 0 })
        onTestFinished(() => { mux.abort() })
        mux.once('stream', (control: MuxStream) => {
          control.on('error', () => { /* aborted when the test ends */ })
          void (async () => {
            const hello = parseHello(await readFramedJson(control))
            control.write(encodeFramedJson({ ok: true, spoke: SPOKE, ports: [] }))
            const asked: Array<Promise<unknown>> = []
            for (const upstream of ['alertmanager', '127.0.0.1:22']) {
              const stream = mux.openStream()
              stream.on('error', () => { /* a reset is one of the expected outcomes */ })
              writeFramedJson(stream, { upstream })
              asked.push(readStreamStatus(stream, { signal: AbortSignal.timeout(30_000) }))
            }
            // A stream that never names its upstream: the agent resets it after its helloTimeoutMs.
            const silent = mux.openStream()
            silent.on('error', () => { /* the reset is the expected outcome */ })
            asked.push(readStreamStatus(silent, { signal: AbortSignal.timeout(30_000) }))
            for (const answer of asked) answer.catch(() => { /* settled below */ })
            return { helloUpstreams: hello.upstreams, asked }
          })().then(resolveFake, rejectFake)
        })
      })
    })
    onTestFinished(() => { httpServer.closeAllConnections(); httpServer.close() })
    const fakePort = await listen(httpServer)
    const fakeAgent = await startAgent({ server: `ws://127.0.0.1:${fakePort}/connect`, token: token.token, helloTimeoutMs: 300, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echo.port }] }, testLogger('agent'))
    expect(fakeAgent.state).toBe('connected')
    const { helloUpstreams, asked } = await fakeSide
    expect(helloUpstreams).toEqual(['prometheus'])
    const [unknown, hostPort, silent] = await Promise.allSettled(asked)
    expect(unknown?.status).toBe('rejected')
    const reason = unknown?.status === 'rejected' ? unknown.reason as unknown : undefined
    expect(reason).toBeInstanceOf(ProtocolError)
    expect(reason).toMatchObject({ code: 'SLK_ERR_PROTO_UPSTREAM_REFUSED' })
    expect(String((reason as Error).message)).toContain('alertmanager')
    // An address instead of a name is not a valid header: refused (reset) without dialing anything.
    // Both are reset by the agent; its log tells why: a header it could not accept vs. none in time.
    const resetCause = { code: 'SLK_ERR_PROTO_CLOSED', cause: { code: 'SLK_ERR_MUX_STREAM_RESET' } }
    expect(hostPort?.status === 'rejected' ? hostPort.reason : hostPort).toMatchObject(resetCause)
    const badHeaders = logs.entries().filter((e) => e.msg === 'bad stream header').map((e) => ({ streamId: e.streamId, code: (e.err as { code?: string } | undefined)?.code }))
    expect(badHeaders).toContainEqual({ streamId: 4, code: 'SLK_ERR_PROTO_HEADER_INVALID' })
    expect(silent?.status === 'rejected' ? silent.reason : silent).toMatchObject(resetCause)
    expect(echo.connections).toBe(1)
  })

  test('graceful close: an in-flight transfer finishes sha256-exact while /readyz answers 503', async () => {
    dumpLogsOnFailure()
    const bytes = 64 * MiB
    const seed = 51
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => { /* asserted by the client's hash */ })
      pipeline(deterministicSource(bytes, seed), socket).catch(() => { /* as above */ })
    })
    trackSockets(server)
    const upstreamPort = await listen(server)
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, port, url } = await startExitNode(spokesConfig([{ tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), testLogger('exit-node'), { shutdownGraceMs: 120_000 })
    await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }] }, testLogger('agent'))
    expect(await httpGet(port, '/readyz')).toMatchObject({ status: 200 })

    const client = await connectTcp(dataPort)
    client.end()
    // The client reads nothing until /readyz has answered: the transfer cannot finish before (the
    // tunnel holds far less than 64 MiB), so the close is surely waiting for it.
    client.pause()
    await waitFor(() => client.readableLength > 0, { what: 'the first bytes of the transfer' })
    const closing = exitNode.close()
    let closed = false
    void closing.then(() => { closed = true })
    const readyz = await httpGet(port, '/readyz')
    expect(readyz).toMatchObject({ status: 503 })
    expect(closed).toBe(false)
    expect(await hashStream(client)).toEqual({ sha256: expectedSha256(bytes, seed), bytes })
    await closing
    expect((await connectError(dataPort)).code).toBe('ECONNREFUSED')
  })

  test('keepalive: a frozen link is detected by the keepalive deadline and the agent reconnects after it thaws', async () => {
    dumpLogsOnFailure()
    const echo = await startEchoUpstream()
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, port: exitPort } = await startExitNode(spokesConfig([{ tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), testLogger('exit-node'))
    const relay = await startFreezableRelay(exitPort)
    const agent = await startAgent({
      server: `ws://127.0.0.1:${relay.port}/connect`,
      token: token.token,
      upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echo.port }],
      keepaliveIntervalMs: 200,
      keepaliveTimeoutMs: 600,
      handshakeTimeoutMs: 2000,
    }, testLogger('agent'))
    const payload = randomBytes(10_000)
    expect((await roundTrip(dataPort, payload)).equals(payload)).toBe(true)

    const disconnected = once(agent, 'disconnected', { signal: AbortSignal.timeout(30_000) })
    relay.freeze()
    const [err] = await disconnected as [Error & { code?: string } | undefined]
    // The keepalive deadline is what noticed (not TCP, not the handshake timeout): its own code says so.
    expect(err).toMatchObject({ code: 'SLK_ERR_AGENT_CONNECT', cause: { code: 'SLK_ERR_MUX_KEEPALIVE_TIMEOUT' } })

    const reconnected = once(agent, 'connected', { signal: AbortSignal.timeout(15_000) })
    relay.thaw()
    await reconnected
    await waitFor(() => exitNode.sessions.sessionsOf(SPOKE).some((s) => !s.mux.closed), { what: 'a live exit-node session' })
    const again = randomBytes(10_000)
    expect((await roundTrip(dataPort, again)).equals(again)).toBe(true)
  })
})

/** GET over a fresh connection; resolves with status and body. */
async function httpGet (port: number, path: string): Promise<{ status: number, body: string }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false, signal: AbortSignal.timeout(30_000) }, resolve).once('error', reject)
  })
  let body = ''
  for await (const chunk of res) body += String(chunk)
  return { status: res.statusCode ?? 0, body }
}

/**
 * A TCP relay in front of `targetPort` that can stop forwarding without closing anything (both
 * directions and new connections), like a stuck NAT or proxy, and resume later.
 */
async function startFreezableRelay (targetPort: number): Promise<{ port: number, freeze: () => void, thaw: () => void }> {
  let frozen = false
  const pairs = new Set<[net.Socket, net.Socket]>()
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (inbound) => {
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true })
    // Explicitly paused first, so attaching 'data' listeners does not start the flow.
    inbound.pause()
    outbound.pause()
    const pair: [net.Socket, net.Socket] = [inbound, outbound]
    pairs.add(pair)
    const forget = (): void => {
      pairs.delete(pair)
      inbound.destroy()
      outbound.destroy()
    }
    inbound.on('error', forget).on('close', forget)
    outbound.on('error', forget).on('close', forget)
    inbound.on('data', (chunk: Buffer) => { outbound.write(chunk) })
    outbound.on('data', (chunk: Buffer) => { inbound.write(chunk) })
    inbound.on('end', () => { outbound.end() })
    outbound.on('end', () => { inbound.end() })
    if (!frozen) {
      inbound.resume()
      outbound.resume()
    }
  })
  onTestFinished(() => { for (const [a, b] of pairs) { a.destroy(); b.destroy() } })
  const port = await listen(server)
  return {
    port,
    freeze: () => {
      frozen = true
      for (const [a, b] of pairs) { a.pause(); b.pause() }
    },
    thaw: () => {
      frozen = false
      for (const [a, b] of pairs) { a.resume(); b.resume() }
    },
  }
}
