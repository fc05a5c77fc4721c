/**
 * Authentication before the WebSocket upgrade, protocol-version refusal, hostile input on the control
 * port, and live revocation/expiry — with raw HTTP on real sockets and the in-process exit-node and
 * agent. Every log line both write is collected, and no test may leave a token secret in it.
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { afterEach, beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import type { Logger } from 'pino'
import { connectExitNode } from '@spokelink/agent'
import type { Agent } from '@spokelink/agent'
import type { ExitNode } from '@spokelink/exit-node'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken, SpokesConfig } from '@spokelink/auth'
import { PROTOCOL_NAME, PROTOCOL_VERSION, ProtocolError, createMuxSession, readFramedJson, writeFramedJson } from '@spokelink/protocol'
import type { MuxStream } from '@spokelink/protocol'
import { createLogCapture, deterministicSource, expectedSha256, freePort, hashStream, spokesYaml, startEchoServer, waitFor, rawHttpExchange, webSocketUpgradeRequest } from '@spokelink/testkit'
import type { RawHttpResponse } from '@spokelink/testkit'
import { listen, startAgent, startExitNode } from './in-process-tunnel.js'

const SPOKE = 'orion'
const MB = 1_000_000

// --- log capture and secret bookkeeping ---------------------------------------------------------

/** Every line the exit-nodes and agents of the current test logged, at trace level. */
const logs = createLogCapture()
/** Token strings and secret parts used by the current test; none may appear in a log line. */
let secrets: string[] = []

beforeEach(() => {
  logs.clear()
  secrets = []
  onTestFailed(() => { process.stderr.write(`--- spokelink logs of the failed test ---\n${logs.text()}`) })
})

afterEach(() => {
  expect(logs.lines.length, 'the test captured no log line, so the secret check proves nothing').toBeGreaterThan(0)
  const text = logs.text()
  for (const secret of secrets) {
    expect(text.includes(secret), `a token or secret used by the test (${secret.slice(0, 12)}…) appears in the logs`).toBe(false)
  }
})

function testLogger (name: string): Logger {
  return logs.logger(name, 'trace')
}

/** A fresh spoke token whose full string and secret part are checked against the logs. */
function newToken (): CreatedSpokeToken {
  const token = createSpokeToken()
  remember(token.token)
  remember(token.token.slice(`slk_${token.id}_`.length))
  return token
}

function remember (secret: string): string {
  secrets.push(secret)
  return secret
}

// --- harness ------------------------------------------------------------------------------------

interface TokenSpec {
  token: CreatedSpokeToken
  expires?: Date
  revoked?: boolean
}

function spokesConfig (tokens: TokenSpec[], dataPort: number): SpokesConfig {
  const spoke = {
    name: SPOKE,
    labels: { env: 'test' },
    tokens: tokens.map(({ token, expires, revoked }) => ({ id: token.id, sha256: token.sha256, expires, revoked })),
    ports: [{ upstream: 'prometheus', port: dataPort }],
  }
  return parseSpokesConfig(spokesYaml([spoke]), 'test')
}

/** An echo upstream, closed when the test finishes; resolves with its port. */
async function startEchoUpstream (): Promise<number> {
  const echo = await startEchoServer()
  onTestFinished(async () => { await echo.close() })
  return echo.port
}

/** Sends `bytes` deterministic bytes through the data-plane port to the echo upstream; resolves with the hash of the echo. */
async function echoThroughTunnel (dataPort: number, bytes: number, seed: number): Promise<{ sha256: string, bytes: number }> {
  const socket = net.connect({ host: '127.0.0.1', port: dataPort, allowHalfOpen: true })
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect', { signal: AbortSignal.timeout(30_000) })
  const [, echoed] = await Promise.all([pipeline(deterministicSource(bytes, seed), socket), hashStream(socket)])
  return echoed
}

/** One raw exchange: the exit-node must close the connection itself (a reset counts as a close). */
function rawExchange (port: number, request: string | Buffer): Promise<RawHttpResponse> {
  return rawHttpExchange(port, request, { timeoutMs: 30_000 })
}

/** A WebSocket upgrade request for our subprotocol with the given extra headers (null drops a default one). */
function upgradeRequest (port: number, headers: Record<string, string | null>, path = '/connect'): string {
  return webSocketUpgradeRequest(port, PROTOCOL_NAME, headers, path)
}

/** Asserts a plain refusal: the given status, no upgrade, and a body of one short line without any secret. */
function expectRefusal (res: RawHttpResponse, status: number, reason: string | RegExp): void {
  expect(res.status, res.raw.slice(0, 200)).toBe(status)
  expect(res.raw.startsWith('HTTP/1.1 101')).toBe(false)
  expect(res.headers['sec-websocket-accept']).toBeUndefined()
  expect(res.headers.upgrade).toBeUndefined()
  expect(res.body).toMatch(/^[^\n]{1,120}\n$/)
  if (typeof reason === 'string') expect(res.body).toBe(`${reason}\n`)
  else expect(res.body).toMatch(reason)
  for (const secret of secrets) expect(res.raw.includes(secret), 'the refusal echoes a secret').toBe(false)
}

/** `spokelink_auth_failures_total` by reason, from the exit-node's `/metrics`. */
async function authFailures (port: number): Promise<Record<string, number>> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false, signal: AbortSignal.timeout(30_000) }, resolve).once('error', reject)
  })
  let text = ''
  for await (const chunk of res) text += String(chunk)
  const counts: Record<string, number> = {}
  for (const match of text.matchAll(/^spokelink_auth_failures_total\{reason="([^"]+)"\} (\d+)$/gm)) {
    counts[match[1] ?? ''] = Number(match[2])
  }
  return counts
}

async function nextDisconnect (agent: Agent, timeoutMs = 30_000): Promise<Error & { code?: string }> {
  const [err] = await once(agent, 'disconnected', { signal: AbortSignal.timeout(timeoutMs) }) as [Error & { code?: string } | undefined]
  if (err === undefined) throw new Error('the agent disconnected without an error')
  return err
}

// --- tests --------------------------------------------------------------------------------------

describe('upgrade authentication', () => {
  test('bad, malformed, expired, revoked and URL-borne tokens get a plain 401/403 before any upgrade', async () => {
    const good = newToken()
    const expired = newToken()
    const revoked = newToken()
    const dataPort = await freePort()
    const { port, adminPort } = await startExitNode(spokesConfig([
      { token: good },
      { token: expired, expires: new Date('2020-01-01T00:00:00Z') },
      { token: revoked, revoked: true },
    ], dataPort), testLogger('exit-node'))
    const donor = newToken()
    const wrongSecret = remember(`slk_${good.id}_${donor.token.slice(`slk_${donor.id}_`.length)}`)
    const unknownId = newToken().token

    const cases: Array<{ what: string, headers: Record<string, string | null>, path?: string, status: number, reason: string }> = [
      { what: 'no Authorization', headers: {}, status: 401, reason: 'missing bearer token' },
      { what: 'wrong secret', headers: { Authorization: `Bearer ${wrongSecret}` }, status: 401, reason: 'invalid token' },
      { what: 'unknown id', headers: { Authorization: `Bearer ${unknownId}` }, status: 401, reason: 'invalid token' },
      { what: 'not a token', headers: { Authorization: 'Bearer not-a-spoke-token' }, status: 401, reason: 'malformed token' },
      { what: 'Basic scheme', headers: { Authorization: `Basic ${Buffer.from(`x:${good.token}`).toString('base64')}` }, status: 401, reason: 'malformed authorization header' },
      { what: 'bare token', headers: { Authorization: good.token }, status: 401, reason: 'malformed authorization header' },
      { what: 'expired', headers: { Authorization: `Bearer ${expired.token}` }, status: 403, reason: 'token expired' },
      { what: 'revoked', headers: { Authorization: `Bearer ${revoked.token}` }, status: 403, reason: 'token revoked' },
      { what: 'token in ?token=', headers: {}, path: `/connect?token=${good.token}`, status: 401, reason: 'missing bearer token' },
      { what: 'token in ?access_token=', headers: {}, path: `/connect?access_token=${encodeURIComponent(good.token)}`, status: 401, reason: 'missing bearer token' },
    ]
    for (const c of cases) {
      const res = await rawExchange(port, upgradeRequest(port, c.headers, c.path))
      expect.soft(res.status, c.what).toBe(c.status)
      expectRefusal(res, c.status, c.reason)
    }
    expect(await authFailures(adminPort)).toEqual({ missing: 3, invalid: 2, malformed: 3, expired: 1, revoked: 1 })

    // The same good token in the header is accepted (101), so the refusals above are about the token's form.
    const ok = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port })
      onTestFinished(() => { socket.destroy() })
      socket.once('data', (chunk: Buffer) => { resolve(chunk.toString('latin1').split('\r\n')[0] ?? '') })
      socket.once('error', reject)
      socket.write(upgradeRequest(port, { Authorization: `Bearer ${good.token}` }))
    })
    expect(ok).toBe('HTTP/1.1 101 Switching Protocols')
  })

  test('a peer speaking another protocol version is told both versions, on both sides', async () => {
    const good = newToken()
    const dataPort = await freePort()
    const { port, adminPort } = await startExitNode(spokesConfig([{ token: good }], dataPort), testLogger('exit-node'))

    // Exit-node side: a v2 agent gets 400 naming both versions, with the version the server speaks.
    const res = await rawExchange(port, upgradeRequest(port, { 'Sec-WebSocket-Protocol': 'spokelink.v2', Authorization: `Bearer ${good.token}` }))
    expectRefusal(res, 400, /spokelink\.v1.*spokelink\.v2/)
    expect(res.headers['x-spokelink-protocol']).toBe('spokelink.v1')
    const none = await rawExchange(port, upgradeRequest(port, { 'Sec-WebSocket-Protocol': null, Authorization: `Bearer ${good.token}` }))
    expectRefusal(none, 400, /spokelink\.v1/)
    expect(await authFailures(adminPort)).toEqual({ version: 2 })

    // Agent side: a fake v2 exit-node answers 400 + X-Spokelink-Protocol: spokelink.v2.
    const seen: Array<{ url: string | undefined, authorization: string | undefined, protocol: string | undefined }> = []
    const fake = http.createServer()
    fake.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      seen.push({ url: req.url, authorization: req.headers.authorization, protocol: req.headers['sec-websocket-protocol'] })
      const body = 'exit-node speaks spokelink.v2\n'
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nX-Spokelink-Protocol: spokelink.v2\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    })
    onTestFinished(() => { fake.closeAllConnections() })
    const fakePort = await listen(fake)
    const url = `ws://127.0.0.1:${fakePort}/connect`
    const err: unknown = await connectExitNode({ url, token: good.token, insecure: false, handshakeTimeoutMs: 5000, maxMessageBytes: 1 << 20 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ProtocolError)
    expect(err).toMatchObject({ code: 'SLK_ERR_PROTO_VERSION_MISMATCH' })
    expect(String((err as Error).message)).toMatch(/spokelink\.v2.*spokelink\.v1/)
    expect(seen[0]).toEqual({ url: '/connect', authorization: `Bearer ${good.token}`, protocol: 'spokelink.v1' })

    const agent = await startAgent({ server: url, token: good.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: 9 }] }, testLogger('agent'), false)
    expect(await nextDisconnect(agent)).toMatchObject({ code: 'SLK_ERR_PROTO_VERSION_MISMATCH' })
  })

  test('an agent that upgrades but never finishes its hello is cut off after helloTimeoutMs', async () => {
    const good = newToken()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{ token: good }], dataPort), testLogger('exit-node'), { helloTimeoutMs: 300 })
    // A real upgrade with a valid token, then silence: no control stream (a) or a control stream with half a hello (b).
    for (const sendHalfHello of [false, true]) {
      const { ws, duplex } = await connectExitNode({ url, token: good.token, insecure: false, handshakeTimeoutMs: 5000, maxMessageBytes: 1 << 20 })
      duplex.on('error', () => { /* the exit-node closing it is the point */ })
      const session = createMuxSession(duplex, 'client', { keepaliveIntervalMs: 0 })
      if (sendHalfHello) {
        const control = session.openStream()
        control.on('error', () => { /* closed with the session */ })
        control.write(Buffer.from([0, 0, 0, 100, 0x7b]))
      }
      const [code] = await once(ws, 'close', { signal: AbortSignal.timeout(30_000) }) as [number]
      expect(code).toBe(4400)
      expect(exitNode.sessions.all()).toEqual([])
    }
  })

  test('an agent that accepts a data stream but never answers its status is cut off after streamOpenTimeoutMs', async () => {
    const good = newToken()
    const dataPort = await freePort()
    const { exitNode, registry, url } = await startExitNode(spokesConfig([{ token: good }], dataPort), testLogger('exit-node'), { streamOpenTimeoutMs: 300 })
    // A hand-made agent: a proper hello, then it reads data streams and never writes a status byte.
    const { duplex } = await connectExitNode({ url, token: good.token, insecure: false, handshakeTimeoutMs: 5000, maxMessageBytes: 1 << 20 })
    duplex.on('error', () => { /* closed when the test ends */ })
    const session = createMuxSession(duplex, 'client', { keepaliveIntervalMs: 0 })
    onTestFinished(() => { session.abort() })
    let received = ''
    session.on('stream', (stream: MuxStream) => {
      stream.on('error', () => { /* the exit-node's reset */ })
      stream.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
    })
    const control = session.openStream()
    control.on('error', () => { /* closed with the session */ })
    writeFramedJson(control, { version: PROTOCOL_VERSION, agent: 'mute', upstreams: ['prometheus'], labels: {} })
    expect(await readFramedJson(control)).toMatchObject({ ok: true, spoke: SPOKE })
    await waitFor(() => exitNode.sessions.isConnected(SPOKE), { what: 'the mute agent to be registered' })

    const client = net.connect({ host: '127.0.0.1', port: dataPort })
    client.on('error', () => { /* a reset is an accepted way to close */ })
    client.write('GET /federate HTTP/1.1\r\n\r\n')
    // The stream was open and carried the request to the agent; then the exit-node's open deadline,
    // and nothing else, closed it: the failure it logs is the timeout's own code.
    await waitFor(() => received.includes('GET /federate HTTP/1.1'), { what: 'the request at the mute agent' })
    await once(client, 'close', { signal: AbortSignal.timeout(30_000) })
    const refused = `spokelink_streams_total{spoke="${SPOKE}",upstream="prometheus",result="refused"} 1`
    await waitFor(async () => (await registry.getSingleMetricAsString('spokelink_streams_total')).includes(refused), { what: 'the stream counted as refused' })
    const failure = logs.entries().find((e) => e.msg === 'stream refused')
    expect(JSON.stringify(failure?.err)).toContain('SLK_ERR_EXIT_STREAM_OPEN_TIMEOUT')
  })

  test('junk bytes, oversized headers and 500 bad upgrades leave a good session working', async () => {
    const good = newToken()
    const echoPort = await startEchoUpstream()
    const dataPort = await freePort()
    // All 500 come from 127.0.0.1; this test is about isolation, the failed-auth budget has its own test.
    const { exitNode, port, adminPort, url } = await startExitNode(spokesConfig([{ token: good }], dataPort), testLogger('exit-node'), { failedAuthBurst: 1000 })
    await startAgent({ server: url, token: good.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }] }, testLogger('agent'))
    const [session] = exitNode.sessions.sessionsOf(SPOKE)
    if (session === undefined) throw new Error('no session')
    expect(await echoThroughTunnel(dataPort, MB, 1)).toEqual({ sha256: expectedSha256(MB, 1), bytes: MB })

    // Garbage, a request that never finishes, and 100 KB of headers: each costs its own socket only.
    const garbage = await rawExchange(port, randomBytes(64 * 1024))
    expect(garbage.raw.startsWith('HTTP/1.1 101')).toBe(false)
    const half = net.connect({ host: '127.0.0.1', port })
    onTestFinished(() => { half.destroy() })
    half.on('error', () => { /* destroyed at the end of the test */ })
    half.write('GET /connect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nAuthoriz')
    const huge = await rawExchange(port, upgradeRequest(port, { 'X-Padding': 'a'.repeat(100 * 1024), Authorization: `Bearer ${good.token}` }))
    // Over Node's header limit: the exit-node drops the connection without a byte of answer.
    expect(huge.raw).toBe('')

    // 500 bad upgrade attempts, 50 at a time, four kinds of failure.
    const kinds: Array<{ reason: string, status: number, headers: Record<string, string | null> }> = [
      { reason: 'missing', status: 401, headers: {} },
      { reason: 'invalid', status: 401, headers: { Authorization: `Bearer ${newToken().token}` } },
      { reason: 'malformed', status: 401, headers: { Authorization: 'Bearer slk_x' } },
      { reason: 'version', status: 400, headers: { 'Sec-WebSocket-Protocol': 'spokelink.v2', Authorization: `Bearer ${good.token}` } },
    ]
    const statuses: number[] = []
    let next = 0
    await Promise.all(Array.from({ length: 50 }, async () => {
      while (next < 500) {
        const kind = kinds[next++ % kinds.length]
        if (kind === undefined) throw new Error('unreachable')
        const res = await rawExchange(port, upgradeRequest(port, kind.headers))
        statuses.push(res.status === kind.status ? 0 : res.status)
      }
    }))
    expect(statuses).toHaveLength(500)
    expect(statuses.filter((s) => s !== 0)).toEqual([])

    expect(await echoThroughTunnel(dataPort, MB, 2)).toEqual({ sha256: expectedSha256(MB, 2), bytes: MB })
    expect(exitNode.sessions.sessionsOf(SPOKE)).toEqual([session])
    expect(session.mux.closed).toBe(false)
    expect(await authFailures(adminPort)).toEqual({ missing: 125, invalid: 125, malformed: 125, version: 125 })
    half.destroy()
  })

  test('revoking a token closes its live session and the agent is then refused with 403', async () => {
    const token = newToken()
    const other = newToken()
    const echoPort = await startEchoUpstream()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{ token }, { token: other }], dataPort), testLogger('exit-node'), { expiryCheckIntervalMs: 200 })
    const agent = await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }] }, testLogger('agent'))
    expect(await echoThroughTunnel(dataPort, MB, 3)).toEqual({ sha256: expectedSha256(MB, 3), bytes: MB })

    const first = nextDisconnect(agent)
    exitNode.updateSpokes(spokesConfig([{ token, revoked: true }, { token: other }], dataPort))
    const closedErr = await first
    expect(closedErr).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN' })
    expect(closedErr.message).toContain('token revoked')
    expect(exitNode.sessions.all()).toEqual([])
    await waitFor(async () => new Promise<boolean>((resolve) => {
      const probe = net.connect({ host: '127.0.0.1', port: dataPort })
      probe.once('connect', () => { probe.destroy(); resolve(false) })
      probe.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code === 'ECONNREFUSED') })
    }), { what: 'the data-plane port to refuse connections' })

    const retry = await nextDisconnect(agent)
    expect(retry).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN' })
    expect(retry.message).toContain('(403): token revoked')
    expect(logs.lines.some((line) => line.includes('"msg":"session revoked"') && line.includes(`"tokenId":"${token.id}"`))).toBe(true)
  })

  test('a token that expires during its session is cut off by the first expiry check that sees it expired', async () => {
    const token = newToken()
    const echoPort = await startEchoUpstream()
    const dataPort = await freePort()
    // The exit-node's injected clock: the test moves it; the expiry check still runs on its real interval.
    const expiresMs = Date.parse('2031-01-01T00:00:00Z')
    let nowMs = expiresMs - 60_000
    let checksSeen = 0
    let sessionsAfterFirstExpiredCheck: number | undefined
    const started: { exitNode?: ExitNode } = {}
    const clock = (): Date => {
      checksSeen++
      if (nowMs >= expiresMs && sessionsAfterFirstExpiredCheck === undefined) {
        // Runs right after the check that asked for the time, before any other I/O.
        process.nextTick(() => { sessionsAfterFirstExpiredCheck = started.exitNode?.sessions.all().length })
      }
      return new Date(nowMs)
    }
    const { exitNode, url } = await startExitNode(spokesConfig([{ token, expires: new Date(expiresMs) }], dataPort), testLogger('exit-node'), { expiryCheckIntervalMs: 50 }, { clock })
    started.exitNode = exitNode
    const agent = await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }] }, testLogger('agent'))
    expect(exitNode.sessions.isConnected(SPOKE)).toBe(true)

    // One millisecond before expiry, two checks go by and the session stays.
    nowMs = expiresMs - 1
    const before = checksSeen
    await waitFor(() => checksSeen >= before + 2, { what: 'two expiry checks just before the expiry' })
    expect(exitNode.sessions.isConnected(SPOKE)).toBe(true)
    expect(await echoThroughTunnel(dataPort, MB, 4)).toEqual({ sha256: expectedSha256(MB, 4), bytes: MB })

    // At the expiry instant, the very next check ends it.
    const disconnected = nextDisconnect(agent)
    nowMs = expiresMs
    const err = await disconnected
    expect(sessionsAfterFirstExpiredCheck).toBe(0)
    expect(err).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN' })
    expect(err.message).toContain('token expired')
    expect(exitNode.sessions.all()).toEqual([])
    const retry = await nextDisconnect(agent)
    expect(retry).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN' })
    expect(retry.message).toContain('(403): token expired')
  })

  test('a token added with updateSpokes works without a restart, and existing sessions stay', async () => {
    const first = newToken()
    const added = newToken()
    const echoPort = await startEchoUpstream()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(spokesConfig([{ token: first }], dataPort), testLogger('exit-node'))
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }]
    await startAgent({ server: url, token: first.token, upstreams, agentName: 'replica-a' }, testLogger('agent'))
    const [existing] = exitNode.sessions.sessionsOf(SPOKE)

    const newcomer = await startAgent({ server: url, token: added.token, upstreams, agentName: 'replica-b' }, testLogger('agent'), false)
    expect(await nextDisconnect(newcomer)).toMatchObject({ code: 'SLK_ERR_AGENT_UNAUTHORIZED' })

    const connected = once(newcomer, 'connected', { signal: AbortSignal.timeout(30_000) })
    exitNode.updateSpokes(spokesConfig([{ token: first }, { token: added }], dataPort))
    await connected
    const sessions = exitNode.sessions.sessionsOf(SPOKE)
    expect(sessions.map((s) => s.agent).sort()).toEqual(['replica-a', 'replica-b'])
    expect(sessions).toContain(existing)
    expect(existing?.mux.closed).toBe(false)
    for (let i = 0; i < 4; i++) {
      expect(await echoThroughTunnel(dataPort, 100_000, 10 + i)).toEqual({ sha256: expectedSha256(100_000, 10 + i), bytes: 100_000 })
    }
  })
})
