import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { WebSocketServer } from 'ws'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { PROTOCOL_NAME, createMuxSession, createWebSocketDuplex, encodeFramedJson, readFramedJson } from '@spokelink/protocol'
import type { MuxStream } from '@spokelink/protocol'
import {
  createLogCapture,
  freePort,
  metricValue,
  sha256Hex,
  startEchoServer,
  startRecordingRelay,
  waitFor,
} from '@spokelink/testkit'
import type { Agent } from '@spokelink/agent'
import type { ExitNodeOptions } from '@spokelink/exit-node'
import { listen, startAgent, startExitNode } from './in-process-tunnel.js'
import type { RunningExitNode } from './in-process-tunnel.js'

// Hub services in-process: a real exit-node and agent over loopback WebSocket, the agent's --hub-service listener,
// and TCP servers standing in for the hub's services. Each test names the guard it covers.

interface Rig {
  exit: RunningExitNode
  /** The spokes text the exit-node started with, for reload tests. */
  spokesText: (hubServices: string) => string
  agent: Agent
  listenPort: (name: string) => number
  metrics: () => Promise<string>
  agentLogs: ReturnType<typeof createLogCapture>
}

/** An exit-node whose spoke lists `hubServices`, and an agent with `--hub-service` listeners named `listeners`. */
async function rig (hubServices: string, listeners: string[], agentHub: { maxConnectionsPerHubService?: number } = {}, exitOptions: ExitNodeOptions = {}): Promise<Rig> {
  const logs = createLogCapture()
  const agentLogs = createLogCapture()
  const { token, id, sha256 } = createSpokeToken()
  const spokesText = (services: string): string => `spokes:\n  - name: orion-aws\n    tokens: [{id: "${id}", sha256: "${sha256}"}]\n    hubServices: ${services}\n`
  const exit = await startExitNode(parseSpokesConfig(spokesText(hubServices), 'test'), logs.logger('exit-node'), { streamOpenTimeoutMs: 60_000, ...exitOptions })
  const agent = await startAgent({
    server: exit.url,
    token,
    upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: 1 }],
    hubServices: listeners.map((name) => ({ name, host: '127.0.0.1', port: 0 })),
    // A minute for the exit-node's status: a connection closed within waitFor's 10 s was refused, not timed out.
    hubService: { statusTimeoutMs: 60_000, ...agentHub },
  }, agentLogs.logger('agent'), false)
  await agent.listenHubServices()
  await waitFor(() => agent.state === 'connected', { what: 'the agent to connect', timeoutMs: 30_000 })
  return {
    exit,
    spokesText,
    agent,
    agentLogs,
    listenPort: (name) => agent.hubServiceAddresses[name]?.port ?? 0,
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${exit.adminPort}/metrics`)
      return res.text()
    },
  }
}

/** Connects to the agent's listener; destroyed when the test ends. */
async function dial (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  socket.on('error', () => {})
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect')
  return socket
}

async function readAll (socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/**
 * Whether the far end closed the connection: reset, or ended (FIN) — our clients are half-open sockets, so a FIN
 * leaves them open for writing; an HTTP client reads it as "connection closed before the response".
 */
function closedByPeer (socket: net.Socket): boolean {
  return socket.closed || socket.readableEnded
}

/** Reads until the far end closes; resolves with what arrived. */
async function untilClosedByPeer (socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  await waitFor(() => closedByPeer(socket), { what: 'the far end to close the connection' })
  return Buffer.concat(chunks)
}

/** A TCP server on 127.0.0.1:0 that counts connections and never answers: a canary for dials it must not get. */
async function canary (): Promise<{ port: number, connections: () => number }> {
  let connections = 0
  const server = net.createServer((socket) => { connections++; socket.destroy() })
  const port = await listen(server)
  return { port, connections: () => connections }
}

describe('hub services through the tunnel (in-process exit-node and agent)', () => {
  test('a local connection reaches the configured address: 4 MiB echoed byte-exact, bytes counted per spoke and service', async () => {
    const echo = await startEchoServer()
    onTestFinished(async () => { await echo.close() })
    const { listenPort, metrics } = await rig(`[{name: remote-write, address: "127.0.0.1:${echo.port}"}]`, ['remote-write'])
    const client = await dial(listenPort('remote-write'))
    const payload = Buffer.alloc(4 * 1024 * 1024)
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32BE(i, i)
    const received = readAll(client)
    client.end(payload)
    expect(sha256Hex(await received)).toBe(sha256Hex(payload))
    expect(echo.connections).toBe(1)
    await waitFor(async () => {
      const text = await metrics()
      expect(metricValue(text, 'spokelink_hub_bytes_total', { spoke: 'orion-aws', service: 'remote-write', direction: 'to_hub' })).toBe(payload.length)
      expect(metricValue(text, 'spokelink_hub_bytes_total', { spoke: 'orion-aws', service: 'remote-write', direction: 'to_spoke' })).toBe(payload.length)
      expect(metricValue(text, 'spokelink_hub_streams_total', { spoke: 'orion-aws', service: 'remote-write', result: 'ok' })).toBe(1)
      return true
    }, { what: 'hub bytes and streams counted' })
  })

  test('a name the spoke does not list is refused with a reason: the local client is closed at once, the agent logs why, nothing is dialed', async () => {
    const bait = await canary()
    const { listenPort, metrics, agentLogs } = await rig(`[{name: remote-write, address: "127.0.0.1:${bait.port}"}]`, ['loki'])
    const client = await dial(listenPort('loki'))
    client.write('POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\n\r\n')
    // The exit-node's dial deadline is 60 s: a close within waitFor's 10 s shows the refusal, not a timeout.
    expect(await untilClosedByPeer(client)).toEqual(Buffer.alloc(0))
    const refusal = await waitFor(() => agentLogs.entries().find((entry) => entry.msg === 'hub stream refused by the exit-node'), { what: 'the agent to log the refusal' })
    expect(refusal).toMatchObject({ level: 40, hubService: 'loki', code: 'SLK_ERR_PROTO_HUB_SERVICE_REFUSED', reason: 'exit-node refused the hub stream: spoke orion-aws may not reach hub service "loki" (no hubServices entry in the exit-node\'s spokes file)' })
    const text = await metrics()
    expect(metricValue(text, 'spokelink_hub_streams_total', { spoke: 'orion-aws', service: '_unlisted', result: 'not_allowed' })).toBe(1)
    expect(bait.connections()).toBe(0)
  })

  test('a hub service that is down gives the local client a fast close (no hang) and counts dial_failed', async () => {
    const downPort = await freePort()
    const { listenPort, metrics } = await rig(`[{name: remote-write, address: "127.0.0.1:${downPort}"}]`, ['remote-write'])
    const client = await dial(listenPort('remote-write'))
    client.write('POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')
    expect(await untilClosedByPeer(client)).toEqual(Buffer.alloc(0))
    await waitFor(async () => metricValue(await metrics(), 'spokelink_hub_streams_total', { spoke: 'orion-aws', service: 'remote-write', result: 'dial_failed' }) === 1, { what: 'dial_failed counted' })
  })

  test('maxConnections of the hubServices entry: one stream open, the second is refused BUSY; after the first closes a new one is served', async () => {
    const echo = await startEchoServer()
    onTestFinished(async () => { await echo.close() })
    const { listenPort, metrics, agentLogs } = await rig(`[{name: remote-write, address: "127.0.0.1:${echo.port}", maxConnections: 1}]`, ['remote-write'])
    const first = await dial(listenPort('remote-write'))
    first.write('one')
    await once(first, 'data')
    const second = await dial(listenPort('remote-write'))
    second.write('two')
    expect(await untilClosedByPeer(second)).toEqual(Buffer.alloc(0))
    await waitFor(() => agentLogs.entries().some((entry) => typeof entry.reason === 'string' && entry.reason.includes('already has 1 streams to hub service "remote-write" (maxConnections)')), { what: 'the BUSY reason in the agent log' })
    expect(metricValue(await metrics(), 'spokelink_hub_streams_total', { spoke: 'orion-aws', service: 'remote-write', result: 'full' })).toBe(1)
    first.end()
    await untilClosedByPeer(first)
    await waitFor(async () => metricValue(await metrics(), 'spokelink_hub_streams_active', { spoke: 'orion-aws', service: 'remote-write' }) === 0, { what: 'the first stream to end' })
    const third = await dial(listenPort('remote-write'))
    const answer = readAll(third)
    third.end('three')
    expect((await answer).toString()).toBe('three')
  })

  test('the agent\'s own cap (maxConnectionsPerHubService 1): a second local connection is reset at accept, without a stream', async () => {
    const echo = await startEchoServer()
    onTestFinished(async () => { await echo.close() })
    const { listenPort } = await rig(`[{name: remote-write, address: "127.0.0.1:${echo.port}"}]`, ['remote-write'], { maxConnectionsPerHubService: 1 })
    const first = await dial(listenPort('remote-write'))
    first.write('one')
    await once(first, 'data')
    // The reset may even beat the client's 'connect' event: no dial() here, just the socket's fate.
    const second = net.connect({ host: '127.0.0.1', port: listenPort('remote-write') })
    onTestFinished(() => { second.destroy() })
    let error: Error | undefined
    second.once('error', (err) => { error = err })
    await waitFor(() => second.closed, { what: 'the second local connection to be reset' })
    expect(error).toMatchObject({ code: 'ECONNRESET' })
    expect(echo.connections).toBe(1)
  })

  test('backpressure end to end: a hub receiver that stops reading leaves the bytes with the client, not in the tunnel; all arrive once it reads', async () => {
    // The receiver reads nothing until told to; what it got so far is kept to check every byte at the end.
    const received: Buffer[] = []
    let receiver: net.Socket | undefined
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      receiver = socket
      socket.pause()
      socket.on('data', (chunk: Buffer) => { received.push(chunk) })
      socket.on('end', () => { socket.end() })
    })
    const port = await listen(server)
    const { exit, listenPort } = await rig(`[{name: remote-write, address: "127.0.0.1:${port}"}]`, ['remote-write'])
    const client = await dial(listenPort('remote-write'))
    const payload = Buffer.alloc(96 * 1024 * 1024)
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32BE(i, i)
    // The client writes 64 KiB at a time and honours its own backpressure, as Prometheus's HTTP client does:
    // `handed` is what it got rid of, i.e. what the kernel and the tunnel took.
    const CHUNK = 64 * 1024
    let handed = 0
    const pump = (): void => {
      while (handed < payload.length) {
        const ok = client.write(payload.subarray(handed, handed + CHUNK))
        handed += CHUNK
        if (!ok) return
      }
      client.end()
    }
    client.on('drain', pump)
    pump()
    const session = exit.exitNode.sessions.all()[0]
    if (session === undefined) throw new Error('no session')
    let last = -1
    await waitFor(() => {
      const stalled = handed === last || handed === payload.length
      last = handed
      return stalled
    }, { what: 'the client to stall (or finish) on a receiver that does not read', timeoutMs: 30_000, intervalMs: 1000 })
    // What the tunnel holds is bounded by the stream's window (at most 16 MiB with auto-tuning) plus the socket
    // buffers on the way; an unbounded buffer anywhere would have taken all 96 MiB off the client.
    expect(session.mux.stats.bufferedBytes).toBeLessThanOrEqual(16 * 1024 * 1024)
    expect(handed).toBeLessThan(48 * 1024 * 1024)
    receiver?.resume()
    await waitFor(() => received.reduce((n, chunk) => n + chunk.length, 0) === payload.length, { what: 'every byte at the receiver', timeoutMs: 60_000 })
    expect(sha256Hex(Buffer.concat(received))).toBe(sha256Hex(payload))
  })

  test('a reload that removes the hubServices entry closes the open hub connection too, not only new ones', async () => {
    const echo = await startEchoServer()
    onTestFinished(async () => { await echo.close() })
    const { exit, listenPort, spokesText } = await rig(`[{name: remote-write, address: "127.0.0.1:${echo.port}"}]`, ['remote-write'])
    const client = await dial(listenPort('remote-write'))
    client.write('ping')
    await once(client, 'data')
    exit.exitNode.updateSpokes(parseSpokesConfig(spokesText('[]'), 'test'))
    await untilClosedByPeer(client)
  })
})

/** What a remote-write receiver stand-in saw: each request whose body arrived whole. */
interface ReceivedRequest { method: string, url: string, contentType: string, sha256: string, bytes: number }

/**
 * An HTTP receiver (204 to every request it read whole) behind a recording relay, so a test can also prove that
 * the bytes of a refused request never reached it. Closed when the test ends.
 */
async function startReceiver (): Promise<{ address: string, requests: ReceivedRequest[], relay: Awaited<ReturnType<typeof startRecordingRelay>> }> {
  const requests: ReceivedRequest[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      requests.push({ method: req.method ?? '', url: req.url ?? '', contentType: req.headers['content-type'] ?? '', sha256: sha256Hex(body), bytes: body.length })
      res.writeHead(204).end()
    })
  })
  const port = await listen(server)
  const relay = await startRecordingRelay({ host: '127.0.0.1', port })
  onTestFinished(async () => {
    await relay.close()
    server.closeAllConnections()
  })
  return { address: relay.target, requests, relay }
}

/** One HTTP request on a fresh connection to the agent's listener: status, the policy reason header and the body. */
async function request (port: number, method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{ status: number, reason: string | undefined, text: string }> {
  const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'snappy' }), ...headers } })
  const responded = once(req, 'response') as Promise<[http.IncomingMessage]>
  req.end(body)
  const [res] = await responded
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  const reason = res.headers['spokelink-policy-reason']
  return { status: res.statusCode ?? 0, reason: typeof reason === 'string' ? reason : undefined, text: Buffer.concat(chunks).toString() }
}

describe('hub services with an allow list (the agent\'s HTTP policy engine, at the exit-node)', () => {
  const ALLOW = 'allow: ["POST /api/v1/write"]'

  test('POST /api/v1/write with a binary (protobuf) body passes byte-exact, by Content-Length and chunked', async () => {
    const receiver = await startReceiver()
    const { listenPort } = await rig(`[{name: remote-write, address: "${receiver.address}", ${ALLOW}}]`, ['remote-write'])
    const batch = randomBytes(1024 * 1024)
    expect(await request(listenPort('remote-write'), 'POST', '/api/v1/write', batch)).toEqual({ status: 204, reason: undefined, text: '' })
    expect(await request(listenPort('remote-write'), 'POST', '/api/v1/write', batch, { 'Transfer-Encoding': 'chunked' })).toEqual({ status: 204, reason: undefined, text: '' })
    expect(receiver.requests).toEqual([
      { method: 'POST', url: '/api/v1/write', contentType: 'application/x-protobuf', sha256: sha256Hex(batch), bytes: batch.length },
      { method: 'POST', url: '/api/v1/write', contentType: 'application/x-protobuf', sha256: sha256Hex(batch), bytes: batch.length },
    ])
  })

  test('GET /api/v1/query and POST /api/v1/admin/tsdb/delete_series get 403 with the reason; the receiver sees none of their bytes; denials counted', async () => {
    const receiver = await startReceiver()
    const { listenPort, metrics } = await rig(`[{name: remote-write, address: "${receiver.address}", ${ALLOW}}]`, ['remote-write'])
    const query = await request(listenPort('remote-write'), 'GET', '/api/v1/query?query=up')
    expect(query).toEqual({ status: 403, reason: 'method', text: 'spokelink: GET /api/v1/query denied by allow policy on hub service remote-write\n' })
    const deletion = await request(listenPort('remote-write'), 'POST', '/api/v1/admin/tsdb/delete_series?match[]=up', Buffer.from('x'))
    expect(deletion).toEqual({ status: 403, reason: 'path', text: 'spokelink: POST /api/v1/admin/tsdb/delete_series denied by allow policy on hub service remote-write\n' })
    // An allowed request after them proves the path to the receiver works, so the absence below is the policy's doing.
    expect((await request(listenPort('remote-write'), 'POST', '/api/v1/write', Buffer.from('batch'))).status).toBe(204)
    expect(receiver.relay.requestLines()).toEqual(['POST /api/v1/write HTTP/1.1'])
    expect(receiver.relay.received()).not.toContain('query')
    expect(receiver.relay.received()).not.toContain('delete_series')
    expect(receiver.requests.map((r) => r.url)).toEqual(['/api/v1/write'])
    const text = await metrics()
    expect(metricValue(text, 'spokelink_hub_policy_denied_total', { spoke: 'orion-aws', service: 'remote-write', reason: 'method' })).toBe(1)
    expect(metricValue(text, 'spokelink_hub_policy_denied_total', { spoke: 'orion-aws', service: 'remote-write', reason: 'path' })).toBe(1)
  })

  test('maxHubRequestBodyBytes at the edge: 1024 bytes pass, 1025 get 403 body_too_large (declared or chunked) and never arrive whole', async () => {
    const receiver = await startReceiver()
    const { listenPort, metrics } = await rig(`[{name: remote-write, address: "${receiver.address}", ${ALLOW}}]`, ['remote-write'], {}, { maxHubRequestBodyBytes: 1024 })
    const atCap = randomBytes(1024)
    const overCap = randomBytes(1025)
    expect((await request(listenPort('remote-write'), 'POST', '/api/v1/write', atCap)).status).toBe(204)
    expect(await request(listenPort('remote-write'), 'POST', '/api/v1/write', overCap)).toMatchObject({ status: 403, reason: 'body_too_large' })
    expect(await request(listenPort('remote-write'), 'POST', '/api/v1/write', overCap, { 'Transfer-Encoding': 'chunked' })).toMatchObject({ status: 403, reason: 'body_too_large' })
    expect(receiver.requests).toEqual([{ method: 'POST', url: '/api/v1/write', contentType: 'application/x-protobuf', sha256: sha256Hex(atCap), bytes: 1024 }])
    expect(metricValue(await metrics(), 'spokelink_hub_policy_denied_total', { spoke: 'orion-aws', service: 'remote-write', reason: 'body_too_large' })).toBe(2)
  })

  test('idleTimeout holds under the policy too: a stream with no request is closed and counted idle_timeout', async () => {
    const receiver = await startReceiver()
    const { listenPort, metrics } = await rig(`[{name: remote-write, address: "${receiver.address}", idleTimeout: 300ms, ${ALLOW}}]`, ['remote-write'])
    const client = await dial(listenPort('remote-write'))
    expect((await untilClosedByPeer(client)).length).toBe(0)
    await waitFor(async () => metricValue(await metrics(), 'spokelink_hub_streams_total', { spoke: 'orion-aws', service: 'remote-write', result: 'idle_timeout' }) === 1, { what: 'the idle stream counted' })
    expect(receiver.relay.connections).toBe(0)
  })

  test('a reload that changes the allow list closes the open keep-alive stream, so no request runs under the old list', async () => {
    const receiver = await startReceiver()
    const { exit, listenPort, spokesText } = await rig(`[{name: remote-write, address: "${receiver.address}", ${ALLOW}}]`, ['remote-write'])
    const client = await dial(listenPort('remote-write'))
    client.write('POST /api/v1/write HTTP/1.1\r\nHost: hub\r\nContent-Length: 2\r\n\r\nok')
    const [first] = await once(client, 'data') as [Buffer]
    expect(first.toString('latin1')).toMatch(/^HTTP\/1\.1 204 /)
    exit.exitNode.updateSpokes(parseSpokesConfig(spokesText(`[{name: remote-write, address: "${receiver.address}", allow: ["POST /api/v1/push"]}]`), 'test'))
    await untilClosedByPeer(client)
  })
})

describe('hub services against an exit-node that does not advertise them (v1 compatibility)', () => {
  test('the agent opens no hub stream: the local connection is reset at once and one line says why', async () => {
    // An exit-node of before hub services: its welcome has no hubServices field, and it counts the streams the agent opens.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, handleProtocols: (protocols) => protocols.has(PROTOCOL_NAME) ? PROTOCOL_NAME : false })
    onTestFinished(() => { for (const ws of wss.clients) ws.terminate(); wss.close() })
    await once(wss, 'listening')
    const opened: number[] = []
    wss.on('connection', (ws) => {
      const mux = createMuxSession(createWebSocketDuplex(ws), 'server', { keepaliveIntervalMs: 0 })
      onTestFinished(() => { mux.abort() })
      mux.on('stream', (stream: MuxStream) => {
        stream.on('error', () => {})
        opened.push(stream.id)
        if (stream.id !== 1) return
        void readFramedJson(stream).then(() => { stream.write(encodeFramedJson({ ok: true, spoke: 'old', ports: [] })) })
      })
    })
    const port = (wss.address() as net.AddressInfo).port
    const agentLogs = createLogCapture()
    const agent = await startAgent({
      server: `ws://127.0.0.1:${port}/connect`,
      token: createSpokeToken().token,
      upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: 1 }],
      hubServices: [{ name: 'remote-write', host: '127.0.0.1', port: 0 }],
    }, agentLogs.logger('agent'))
    await agent.listenHubServices()
    const warned = agentLogs.entries().find((entry) => entry.msg === 'exit-node does not serve hub services (an older version); --hub-service connections will be refused')
    expect(warned).toMatchObject({ level: 40, hubServices: ['remote-write'] })
    const client = net.connect({ host: '127.0.0.1', port: agent.hubServiceAddresses['remote-write']?.port ?? 0 })
    onTestFinished(() => { client.destroy() })
    let error: Error | undefined
    client.once('error', (err) => { error = err })
    await waitFor(() => client.closed, { what: 'the local connection to be reset' })
    expect(error).toMatchObject({ code: 'ECONNRESET' })
    expect(opened).toEqual([1])
  })
})
