/**
 * The exit-node's front door (issue 7, items 4–6): timeouts that hold at their configured value, sockets closed
 * after every refused upgrade, caps on unauthenticated connections (global and per source), the per-source
 * failed-auth budget, clipped and sampled refusal logs, and the per-spoke session cap. Real sockets on loopback;
 * other clients get other source addresses from 127.0.0.0/8.
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import tls from 'node:tls'
import { afterEach, beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import WebSocket from 'ws'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken, SpokesConfig } from '@spokelink/auth'
import { PROTOCOL_NAME, PROTOCOL_VERSION, createMuxSession, createWebSocketDuplex, readFramedJson, writeFramedJson } from '@spokelink/protocol'
import type { MuxSession } from '@spokelink/protocol'
import {
  createLogCapture, createTlsFixture, deterministicSource, expectedSha256, freePort, hashStream, metricValue, rawHttpExchange, runProcess, runSpokelink,
  readRssKiB, spokelinkBin, waitFor, webSocketUpgradeRequest,
} from '@spokelink/testkit'
import { listen, startAgent, startExitNode } from './in-process-tunnel.js'

const SPOKE = 'orion'
const MB = 1_000_000
/** The test runner's own SPOKELINK_* variables must not reach the child exit-node. */
const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

// --- log capture ----------------------------------------------------------------------------------

const logs = createLogCapture()
let secrets: string[] = []

beforeEach(() => {
  logs.clear()
  secrets = []
  onTestFailed(() => { process.stderr.write(`--- spokelink logs of the failed test (last 200 lines) ---\n${logs.lines.slice(-200).join('')}`) })
})

afterEach(() => {
  const text = logs.text()
  for (const secret of secrets) expect(text.includes(secret), 'a token appears in the logs').toBe(false)
})

const testLogger = (name: string): Logger => logs.logger(name)

function logged (msg: string): Array<Record<string, unknown>> {
  return logs.entries().filter((entry) => entry.msg === msg)
}

function newToken (): CreatedSpokeToken {
  const token = createSpokeToken()
  secrets.push(token.token)
  return token
}

// --- harness --------------------------------------------------------------------------------------

function spokesText (tokens: CreatedSpokeToken[], dataPort: number, extra = ''): string {
  return [
    'spokes:',
    `  - name: ${SPOKE}`,
    ...(extra === '' ? [] : [`    ${extra}`]),
    '    tokens:',
    ...tokens.map((token) => `      - {id: "${token.id}", sha256: "${token.sha256}"}`),
    '    ports:',
    `      - {upstream: prometheus, listen: "127.0.0.1:${dataPort}"}`,
    '',
  ].join('\n')
}

function spokesConfig (tokens: CreatedSpokeToken[], dataPort: number, extra = ''): SpokesConfig {
  return parseSpokesConfig(spokesText(tokens, dataPort, extra), 'test')
}

async function metric (registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await registry.metrics(), name, labels)
}

/** A TCP connection from `localAddress` that sends nothing; resolves once connected. */
async function idleConnection (port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress })
  onTestFinished(() => { socket.destroy() })
  socket.on('error', () => { /* the exit-node resetting it is one of the outcomes under test */ })
  await once(socket, 'connect', { signal: AbortSignal.timeout(5000) })
  return socket
}

/**
 * Resolves when `socket` closes, reset or not; rejects after `timeoutMs` (far below any default timeout the test
 * rules out). Not `once(socket, 'close')`: that rejects on the 'error' a reset brings first (a slowloris client
 * writing into a socket the exit-node closed), which is a close too.
 */
async function closedWithin (socket: net.Socket, timeoutMs: number, what: string): Promise<void> {
  if (socket.closed) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${what}: still open after ${timeoutMs} ms`)) }, timeoutMs)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

async function startEchoUpstream (): Promise<number> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => { /* a reset stream when a test ends */ })
    pipeline(socket, socket).catch(() => { /* as above */ })
  })
  onTestFinished(() => { for (const socket of sockets) socket.destroy() })
  return listen(server)
}

async function echoThroughTunnel (dataPort: number, bytes: number, seed: number): Promise<{ sha256: string, bytes: number }> {
  const socket = net.connect({ host: '127.0.0.1', port: dataPort, allowHalfOpen: true })
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect', { signal: AbortSignal.timeout(5000) })
  const [, echoed] = await Promise.all([pipeline(deterministicSource(bytes, seed), socket), hashStream(socket)])
  return echoed
}

interface HandMadeSession {
  ws: WebSocket
  /** The welcome's `ok`, or the close code and reason when the exit-node closed the WebSocket first. */
  outcome: { ok: boolean } | { code: number, reason: string }
  mux?: MuxSession
}

/** A hand-made agent: upgrade from `localAddress`, then a hello; resolves with the welcome or the close. */
async function openSession (url: string, token: string, localAddress = '127.0.0.1'): Promise<HandMadeSession> {
  const ws = new WebSocket(url, [PROTOCOL_NAME], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, localAddress })
  onTestFinished(() => { ws.terminate() })
  ws.on('error', () => { /* the close event carries what matters */ })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => { resolve({ code, reason: reason.toString('utf8') }) })
  })
  await Promise.race([once(ws, 'open'), closed])
  if (ws.readyState !== WebSocket.OPEN) return { ws, outcome: await closed }
  const mux = createMuxSession(createWebSocketDuplex(ws), 'client', { keepaliveIntervalMs: 0 })
  mux.on('error', () => { /* closed with the WebSocket */ })
  onTestFinished(() => { mux.abort() })
  const control = mux.openStream()
  control.on('error', () => { /* closed with the session */ })
  writeFramedJson(control, { version: PROTOCOL_VERSION, agent: 'hand-made', upstreams: ['prometheus'], labels: {} })
  const welcome = readFramedJson(control).then((value) => ({ ok: (value as { ok?: unknown }).ok === true }), () => undefined)
  const outcome = await Promise.race([welcome, closed])
  return { ws, mux, outcome: outcome ?? await closed }
}

// --- tests ----------------------------------------------------------------------------------------

describe('front door', () => {
  test.each([false, true])('idle and slowloris clients go at headersTimeoutMs and a wss client that never finishes TLS at tlsHandshakeTimeoutMs (tlsLeanBuffers %s)', async (tlsLeanBuffers) => {
    const spokes = spokesConfig([], await freePort())
    const fixture = await createTlsFixture()
    // 300 ms against Node's defaults: headers checked every 30 s, TLS handshake 120 s. Each wait below allows 15 s.
    const plain = await startExitNode(spokes, testLogger('exit-node'), { headersTimeoutMs: 300 })
    const secure = await startExitNode(spokes, testLogger('exit-node'), { headersTimeoutMs: 300, tlsHandshakeTimeoutMs: 300, tlsLeanBuffers, tls: { certPem: fixture.certPem, keyPem: fixture.keyPem } })

    const idle = await idleConnection(plain.port)
    const slow = await idleConnection(plain.port)
    slow.write('GET /connect HTTP/1.1\r\nHost: x\r\nX-Slow: ')
    const drip = setInterval(() => { slow.write('a') }, 50)
    onTestFinished(() => { clearInterval(drip) })
    const noTls = await idleConnection(secure.port)
    const tlsThenIdle = tls.connect({ host: '127.0.0.1', port: secure.port, ca: fixture.caPem })
    onTestFinished(() => { tlsThenIdle.destroy() })
    tlsThenIdle.on('error', () => { /* closed by the exit-node */ })
    await once(tlsThenIdle, 'secureConnect', { signal: AbortSignal.timeout(5000) })

    await Promise.all([
      closedWithin(idle, 15_000, 'an idle ws connection'),
      closedWithin(slow, 15_000, 'a slowloris ws connection sending a byte every 50 ms'),
      closedWithin(noTls, 15_000, 'a wss connection that never starts TLS'),
      closedWithin(tlsThenIdle, 15_000, 'a wss connection that finished TLS and then sent nothing'),
    ])
    expect(await metric(plain.registry, 'spokelink_control_timeouts_total', { phase: 'headers' })).toBe(2)
    expect(await metric(secure.registry, 'spokelink_control_timeouts_total', { phase: 'tls' })).toBe(1)
    expect(await metric(secure.registry, 'spokelink_control_timeouts_total', { phase: 'headers' })).toBe(1)
    await waitFor(async () => await metric(plain.registry, 'spokelink_control_unauthenticated_connections') === 0, { what: 'every slot released' })
  })

  test('a refused upgrade closes the socket even when the client keeps its side open', async () => {
    const { port, registry } = await startExitNode(spokesConfig([], await freePort()), testLogger('exit-node'), { failedAuthBurst: 1000 })
    // 50 clients that read the 401 and never close their side: the exit-node must not keep them half-open.
    const clients = await Promise.all(Array.from({ length: 50 }, async () => {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
      onTestFinished(() => { socket.destroy() })
      socket.on('error', () => {})
      let answer = ''
      socket.on('data', (chunk: Buffer) => { answer += chunk.toString('latin1') })
      await once(socket, 'connect')
      socket.write(webSocketUpgradeRequest(port, PROTOCOL_NAME, { Authorization: 'Bearer slk_abcd_nope' }))
      await once(socket, 'end', { signal: AbortSignal.timeout(5000) })
      return { socket, answer }
    }))
    expect(new Set(clients.map((client) => client.answer.split('\r\n')[0]))).toEqual(new Set(['HTTP/1.1 401 Unauthorized']))
    // The exit-node's end of every one of them is closed: no slot is held any more.
    await waitFor(async () => await metric(registry, 'spokelink_control_unauthenticated_connections') === 0, { what: 'the exit-node to close all 50 refused sockets', timeoutMs: 30_000 })
  })

  test('unauthenticated connections over the per-source or global cap are closed at accept and counted; an upgrade frees its slot', async () => {
    const good = newToken()
    const echoPort = await startEchoUpstream()
    const dataPort = await freePort()
    // Headers timeout of a minute: any close within the test is the cap's doing.
    const { port, registry, url } = await startExitNode(spokesConfig([good], dataPort), testLogger('exit-node'), {
      maxUnauthenticatedConnections: 30, maxUnauthenticatedPerSource: 10, headersTimeoutMs: 60_000,
    })
    const held = async (): Promise<number> => metric(registry, 'spokelink_control_unauthenticated_connections')

    const first = await Promise.all(Array.from({ length: 10 }, async () => idleConnection(port, '127.0.0.2')))
    await waitFor(async () => await held() === 10, { what: '10 connections from 127.0.0.2 held' })
    const overSource = await Promise.all(Array.from({ length: 5 }, async () => idleConnection(port, '127.0.0.2')))
    await Promise.all(overSource.map(async (socket) => { await closedWithin(socket, 5000, 'an 11th connection from one source') }))
    for (const address of ['127.0.0.3', '127.0.0.4']) {
      await Promise.all(Array.from({ length: 10 }, async () => idleConnection(port, address)))
    }
    await waitFor(async () => await held() === 30, { what: '30 connections held' })
    const overGlobal = await idleConnection(port, '127.0.0.5')
    await closedWithin(overGlobal, 5000, 'a connection past the global cap')
    expect(await metric(registry, 'spokelink_control_refused_total', { reason: 'unauthenticated_source_limit' })).toBe(5)
    expect(await metric(registry, 'spokelink_control_refused_total', { reason: 'unauthenticated_limit' })).toBe(1)
    expect(first.every((socket) => !socket.destroyed)).toBe(true)
    expect(logged('connection refused').length).toBeGreaterThanOrEqual(1)

    // Room again once some close; an agent that gets in no longer counts once upgraded.
    for (const socket of first) socket.destroy()
    await waitFor(async () => await held() === 20, { what: 'the 10 closed connections released' })
    await startAgent({ server: url, token: good.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }] }, testLogger('agent'))
    expect(await echoThroughTunnel(dataPort, MB, 1)).toEqual({ sha256: expectedSha256(MB, 1), bytes: MB })
    expect(await held()).toBe(20)
  })

  test('a source out of failed-auth budget gets 429 with Retry-After; other sources and valid tokens are not refused', async () => {
    const good = newToken()
    const { port, registry } = await startExitNode(spokesConfig([good], await freePort()), testLogger('exit-node'), { failedAuthBurst: 3, failedAuthRefillMs: 60_000 })
    const bad = webSocketUpgradeRequest(port, PROTOCOL_NAME, { Authorization: `Bearer ${newToken().token}` })
    const fromA = { localAddress: '127.0.0.2' }
    const statuses = []
    for (let i = 0; i < 3; i++) statuses.push((await rawHttpExchange(port, bad, fromA)).status)
    expect(statuses).toEqual([401, 401, 401])
    const throttled = await rawHttpExchange(port, bad, fromA)
    expect(throttled.status).toBe(429)
    expect(throttled.headers['retry-after']).toBe('60')
    expect(throttled.body).toBe('too many refused attempts from this address\n')
    const wrongVersion = await rawHttpExchange(port, webSocketUpgradeRequest(port, 'spokelink.v2', { Authorization: `Bearer ${good.token}` }), fromA)
    expect(wrongVersion.status).toBe(429)
    // Another address has its own budget.
    expect((await rawHttpExchange(port, bad, { localAddress: '127.0.0.3' })).status).toBe(401)
    // A valid token is never refused by the budget, so an attacker behind the same NAT cannot lock agents out.
    const ok = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
      onTestFinished(() => { socket.destroy() })
      socket.once('data', (chunk: Buffer) => { resolve(chunk.toString('latin1').split('\r\n')[0] ?? '') })
      socket.once('error', reject)
      socket.write(webSocketUpgradeRequest(port, PROTOCOL_NAME, { Authorization: `Bearer ${good.token}` }))
    })
    expect(ok).toBe('HTTP/1.1 101 Switching Protocols')
    expect(await metric(registry, 'spokelink_control_refused_total', { reason: 'failed_auth_budget' })).toBe(2)
    expect(await metric(registry, 'spokelink_auth_failures_total', { reason: 'invalid' })).toBe(5)
  })

  test('a 15 KB Sec-WebSocket-Protocol is cut to 128 characters in the log, and 300 refusals of a kind log one line and one count', async () => {
    const good = newToken()
    const { exitNode, port } = await startExitNode(spokesConfig([good], await freePort()), testLogger('exit-node'), { failedAuthBurst: 10_000, logSampleIntervalMs: 60_000 })
    const huge = `spokelink.v2, ${'x'.repeat(15_000)}`
    await Promise.all(Array.from({ length: 300 }, async () => {
      const res = await rawHttpExchange(port, webSocketUpgradeRequest(port, huge, { Authorization: `Bearer ${good.token}` }))
      expect(res.status).toBe(400)
    }))
    await Promise.all(Array.from({ length: 300 }, async () => {
      const res = await rawHttpExchange(port, webSocketUpgradeRequest(port, PROTOCOL_NAME, { Authorization: 'Bearer slk_abcd_nope' }))
      expect(res.status).toBe(401)
    }))
    // close() logs the counts still pending.
    await exitNode.close()
    const version = logged('agent protocol version not supported')
    expect(version.map((entry) => entry.repeated)).toEqual([undefined, 299])
    expect(version[0]?.offered).toBe(`spokelink.v2, ${'x'.repeat(114)}…(+${huge.length - 128} chars)`)
    expect(logged('agent refused').map((entry) => [entry.reason, entry.repeated])).toEqual([['malformed token', undefined], [undefined, 299]])
    // 600 refusals cost a few lines, not 600 × 15 KB.
    expect(logs.text().length).toBeLessThan(16 * 1024)
  })
})

describe('sessions per spoke', () => {
  test('20 upgrades at once on one token get maxSessions sessions; the rest are closed with 4429 and the reason; a closed session frees its slot', async () => {
    const good = newToken()
    const dataPort = await freePort()
    const { exitNode, registry, url } = await startExitNode(spokesConfig([good], dataPort, 'maxSessions: 2'), testLogger('exit-node'), { failedAuthBurst: 1000 })
    const sessions = await Promise.all(Array.from({ length: 20 }, async () => openSession(url, good.token)))
    const accepted = sessions.filter((session) => 'ok' in session.outcome && session.outcome.ok)
    const refused = sessions.filter((session) => !('ok' in session.outcome))
    expect(accepted).toHaveLength(2)
    expect(refused.map((session) => session.outcome)).toEqual(Array.from({ length: 18 }, () => ({ code: 4429, reason: `spoke ${SPOKE} is at its session limit (2)` })))
    expect(exitNode.sessions.sessionsOf(SPOKE)).toHaveLength(2)
    expect(await metric(registry, 'spokelink_control_refused_total', { reason: 'session_limit' })).toBe(18)
    expect(logged('session refused').length).toBeLessThanOrEqual(2)

    accepted[0]?.ws.close()
    await waitFor(() => exitNode.sessions.sessionsOf(SPOKE).length === 1, { what: 'the closed session to go' })
    await waitFor(async () => {
      const next = await openSession(url, good.token)
      return 'ok' in next.outcome && next.outcome.ok
    }, { what: 'a new session in the freed slot' })
    expect(exitNode.sessions.sessionsOf(SPOKE)).toHaveLength(2)
  })

  test('without a cap in the spokes file the exit-node default (4) applies', async () => {
    const good = newToken()
    const { url } = await startExitNode(spokesConfig([good], await freePort()), testLogger('exit-node'))
    const sessions = await Promise.all(Array.from({ length: 6 }, async () => openSession(url, good.token)))
    expect(sessions.filter((session) => 'ok' in session.outcome && session.outcome.ok)).toHaveLength(4)
    expect(sessions.filter((session) => 'code' in session.outcome && session.outcome.code === 4429)).toHaveLength(2)
  })

  test('every session open logs its token id and address; a live session from a second address logs a warn', async () => {
    const good = newToken()
    const { url } = await startExitNode(spokesConfig([good], await freePort()), testLogger('exit-node'))
    expect((await openSession(url, good.token, '127.0.0.1')).outcome).toEqual({ ok: true })
    expect((await openSession(url, good.token, '127.0.0.1')).outcome).toEqual({ ok: true })
    expect(logged('spoke has live sessions from another source address')).toEqual([])
    expect((await openSession(url, good.token, '127.0.0.7')).outcome).toEqual({ ok: true })
    await waitFor(() => logged('session opened').length === 3, { what: 'three session opened lines' })
    expect(logged('session opened').map((entry) => [entry.tokenId, entry.remoteAddress])).toEqual([
      [good.id, '127.0.0.1'], [good.id, '127.0.0.1'], [good.id, '127.0.0.7'],
    ])
    const [warn, ...more] = logged('spoke has live sessions from another source address')
    expect(more).toEqual([])
    expect(warn).toMatchObject({ level: 40, spoke: SPOKE, tokenId: good.id, remoteAddress: '127.0.0.7', sameToken: true })
    expect(warn?.otherSessions).toEqual([
      expect.objectContaining({ tokenId: good.id, remoteAddress: '127.0.0.1' }),
      expect.objectContaining({ tokenId: good.id, remoteAddress: '127.0.0.1' }),
    ])
  })
})

describe('flood (exit-node as a child process)', () => {
  test('2,000 idle + 200 slowloris connections: the exit-node holds only its per-source caps, an agent reconnects, the data plane serves, RSS growth stays bounded', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spokelink-front-door-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const good = newToken()
    const echoPort = await startEchoUpstream()
    const dataPort = await freePort()
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, spokesText([good], dataPort))
    const server = runSpokelink([
      'server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile,
      '--max-unauthenticated', '512', '--max-unauthenticated-per-source', '16', '--headers-timeout', '8s',
    ], { env: CLEAN_ENV })
    onTestFinished(async () => { await server.kill() })
    const port = Number((await server.waitForLog((entry) => entry.msg === 'listening' && entry.listener === 'control', { what: 'the control port listening', timeoutMs: 30_000 })).port)
    const adminPort = Number((await server.waitForLog((entry) => entry.msg === 'listening' && entry.listener === 'admin', { what: 'the admin port listening' })).port)
    const url = `ws://127.0.0.1:${port}/connect`
    // /metrics is on the admin port, so scraping takes no control-port slot.
    const scrape = async (): Promise<string> => new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics', agent: false, signal: AbortSignal.timeout(5000) }, (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => { text += chunk.toString('utf8') })
        res.on('end', () => { resolve(text) })
      }).once('error', reject)
    })
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }]
    const first = await startAgent({ server: url, token: good.token, upstreams, agentName: 'first' }, testLogger('agent'))
    expect(await echoThroughTunnel(dataPort, MB, 1)).toEqual({ sha256: expectedSha256(MB, 1), bytes: MB })
    const rssBeforeKiB = await readRssKiB(server.pid)

    // 2,000 idle connections from 20 addresses and 200 slowloris from 10 more: 16 of each address are held.
    const attackers: net.Socket[] = []
    const drips: NodeJS.Timeout[] = []
    onTestFinished(() => {
      for (const drip of drips) clearInterval(drip)
      for (const socket of attackers) socket.destroy()
    })
    const open = async (count: number, firstHost: number, hosts: number, slowloris: boolean): Promise<void> => {
      for (let start = 0; start < count; start += 100) {
        await Promise.all(Array.from({ length: Math.min(100, count - start) }, async (_, j) => {
          const socket = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.0.${firstHost + ((start + j) % hosts)}` })
          attackers.push(socket)
          socket.on('error', () => { /* refused at once, or timed out */ })
          await Promise.race([once(socket, 'connect'), once(socket, 'close')])
          if (slowloris && !socket.destroyed) {
            socket.write('GET /connect HTTP/1.1\r\nHost: x\r\nX-Slow: ')
            drips.push(setInterval(() => { if (!socket.destroyed) socket.write('a') }, 500))
          }
        }))
      }
    }
    await open(2000, 2, 20, false)
    await open(200, 22, 10, true)
    const heldCount = 30 * 16
    await waitFor(async () => metricValue(await scrape(), 'spokelink_control_refused_total', { reason: 'unauthenticated_source_limit' }) === 2200 - heldCount, {
      what: `${2200 - heldCount} connections refused at accept`, timeoutMs: 30_000,
    })
    const metrics = await scrape()
    expect(metricValue(metrics, 'spokelink_control_unauthenticated_connections')).toBe(heldCount)
    expect(metricValue(metrics, 'spokelink_control_refused_total', { reason: 'unauthenticated_limit' })).toBe(0)
    const rssFloodKiB = await readRssKiB(server.pid)

    // Meanwhile the spoke's agent restarts and gets back in, and its data plane serves.
    await first.close({ graceMs: 0 })
    await startAgent({ server: url, token: good.token, upstreams, agentName: 'second' }, testLogger('agent'))
    expect(await echoThroughTunnel(dataPort, MB, 2)).toEqual({ sha256: expectedSha256(MB, 2), bytes: MB })

    // 480 held sockets may cost at most 64 KiB each on top of a 32 MiB allowance for the heap's own growth.
    expect(rssFloodKiB - rssBeforeKiB).toBeLessThan(heldCount * 64 + 32 * 1024)
    // And the header timeout then closes every one of them.
    await waitFor(() => attackers.every((socket) => socket.destroyed), { what: 'every attacking socket closed by the exit-node', timeoutMs: 30_000 })
    const after = await scrape()
    expect(metricValue(after, 'spokelink_control_timeouts_total', { phase: 'headers' })).toBe(heldCount)
    expect(metricValue(after, 'spokelink_control_unauthenticated_connections')).toBe(0)
    const refusedLines = server.logs.filter((entry) => entry.msg === 'connection refused')
    // Sampled: one line per interval (10 s) plus one count, not 1,720 lines.
    expect(refusedLines.length).toBeLessThanOrEqual(4)
  })

  test('at start the exit-node logs the open-file limit (raised to the hard limit) and warns when it is below the caps', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spokelink-front-door-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, 'spokes: []\n')
    // Soft 256, hard 1024: Node raises the soft limit; 1024 < 2048 + 1024 needs a warning.
    const server = runProcess('prlimit', ['--nofile=256:1024', process.execPath, spokelinkBin(), 'server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile], { name: 'spokelink server (prlimit)' })
    onTestFinished(async () => { await server.kill() })
    const limit = await server.waitForLog((entry) => entry.msg === 'open file limit', { what: 'the open file limit line', timeoutMs: 30_000 })
    expect(limit).toMatchObject({ level: 30, soft: 1024, hard: 1024 })
    const warn = await server.waitForLog((entry) => typeof entry.msg === 'string' && entry.msg.startsWith('open file limit is below'), { what: 'the warning' })
    expect(warn).toMatchObject({ level: 40, soft: 1024, hard: 1024, needed: 2048 + 1024 })
  })
})
