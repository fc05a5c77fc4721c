/**
 * Data-plane limits (issue 7, item 7): idle connections are closed, each port has a connection cap,
 * and one port's flood cannot use up a session's streams meant for another port of the same spoke.
 * In-process exit-node and agent on real loopback sockets.
 */
import { once } from 'node:events'
import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { SpokesConfig } from '@spokelink/auth'
import { createLogCapture, deterministicSource, expectedSha256, freePort, hashStream, waitFor } from '@spokelink/testkit'
import type { ExitNodeOptions } from '@spokelink/exit-node'
import { listen, startAgent, startExitNode } from './in-process-tunnel.js'

const SPOKE = 'orion-aws'

const logs = createLogCapture()

beforeEach(() => {
  logs.clear()
  onTestFailed(() => { process.stderr.write(`--- logs of the failed test ---\n${logs.text()}`) })
})

const testLogger = (name: string): Logger => logs.logger(name)

/** An upstream that echoes; `sockets` are its open connections, so a test can see them close. */
async function startEchoUpstream (): Promise<{ port: number, sockets: Set<net.Socket>, accepted: () => number }> {
  const sockets = new Set<net.Socket>()
  let accepted = 0
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => { /* a reset stream when a test ends */ })
    pipeline(socket, socket).catch(() => { /* as above */ })
  })
  onTestFinished(() => { for (const socket of sockets) socket.destroy() })
  return { port: await listen(server), sockets, accepted: () => accepted }
}

/** A spoke with ports `a` and `b`; `extra` is appended to each port's flow mapping (`maxConnections: 2`). */
function spokesConfig (token: { id: string, sha256: string }, ports: { a: number, b: number }, extra: { a?: string, b?: string } = {}): SpokesConfig {
  return parseSpokesConfig([
    'spokes:',
    `  - name: ${SPOKE}`,
    `    tokens: [{id: "${token.id}", sha256: "${token.sha256}"}]`,
    '    ports:',
    `      - {upstream: a, listen: "127.0.0.1:${ports.a}"${extra.a === undefined ? '' : `, ${extra.a}`}}`,
    `      - {upstream: b, listen: "127.0.0.1:${ports.b}"${extra.b === undefined ? '' : `, ${extra.b}`}}`,
    '',
  ].join('\n'), 'test')
}

interface Rig {
  registry: Registry
  ports: { a: number, b: number }
  upstream: Awaited<ReturnType<typeof startEchoUpstream>>
}

async function startRig (extra: { a?: string, b?: string }, options: ExitNodeOptions = {}): Promise<Rig> {
  const token = createSpokeToken()
  const upstream = await startEchoUpstream()
  const ports = { a: await freePort(), b: await freePort() }
  const { registry, url } = await startExitNode(spokesConfig(token, ports, extra), testLogger('exit-node'), options)
  await startAgent({
    server: url,
    token: token.token,
    upstreams: [{ name: 'a', host: '127.0.0.1', port: upstream.port }, { name: 'b', host: '127.0.0.1', port: upstream.port }],
  }, testLogger('agent'))
  return { registry, ports, upstream }
}

async function metricValue (registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get()
  const found = metric?.values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
  return found?.value ?? 0
}

/** Opens a connection that sends nothing; it holds a stream (and an upstream connection) until closed. */
async function idleConnection (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port })
  socket.on('error', () => { /* a reset is one way a refused connection ends */ })
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect')
  return socket
}

/** Echoes `bytes` through the port; resolves with the echo's hash. */
async function echoThrough (port: number, bytes: number, seed: number): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  onTestFinished(() => { socket.destroy() })
  const [, echo] = await Promise.all([pipeline(deterministicSource(bytes, seed), socket), hashStream(socket)])
  return echo.sha256
}

/** Connects and reports how the connection ended: the error code (the refusal is a reset), or 'end' for a plain close. */
async function howItEnds (port: number): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port })
  onTestFinished(() => { socket.destroy() })
  socket.resume()
  // The reset can beat the 'connect' event on loopback, so both come out as an 'error' here.
  const signal = AbortSignal.timeout(10_000)
  const stillOpen = (): string => 'still open after 10 s'
  const error = once(socket, 'error', { signal }).then(([err]) => String((err as NodeJS.ErrnoException).code), stillOpen)
  const closed = once(socket, 'close', { signal }).then(() => 'end', stillOpen)
  return Promise.race([error, closed])
}

describe('data-plane limits', () => {
  test('an idle connection is closed both ways and counted; a fresh connection to its port then works', async () => {
    const { registry, ports, upstream } = await startRig({ a: 'idleTimeout: 200ms, maxConnections: 1' })
    const idle = await idleConnection(ports.a)
    await waitFor(() => upstream.sockets.size === 1, { what: 'the idle connection to reach the upstream' })
    const [upstreamSide] = upstream.sockets
    if (upstreamSide === undefined) throw new Error('no upstream socket')
    // While it holds the port's only slot, a second connection is refused at once.
    expect(await howItEnds(ports.a)).toBe('ECONNRESET')

    // The client sees its connection end, and the agent's upstream connection goes too (the stream was reset).
    await Promise.all([
      once(idle, 'close', { signal: AbortSignal.timeout(10_000) }),
      upstreamSide.closed ? undefined : once(upstreamSide, 'close', { signal: AbortSignal.timeout(10_000) }),
    ])
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'a', result: 'idle_timeout' })).toBe(1)
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'a', result: 'port_full' })).toBe(1)

    // The slot is free again: a new connection carries data byte-exact.
    expect(await echoThrough(ports.a, 64 * 1024, 7)).toBe(expectedSha256(64 * 1024, 7))
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'a', result: 'ok' })).toBe(1)
  })

  test('a port at its cap refuses new connections with a reset, counted, and logs a sampled line, not one per connection', async () => {
    const { registry, ports, upstream } = await startRig({ a: 'maxConnections: 3' })
    const held = await Promise.all([1, 2, 3].map(async () => idleConnection(ports.a)))
    await waitFor(() => upstream.accepted() === 3, { what: 'three connections to reach the upstream' })
    const refused = await Promise.all(Array.from({ length: 10 }, async () => howItEnds(ports.a)))
    expect(refused).toEqual(Array.from({ length: 10 }, () => 'ECONNRESET'))
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'a', result: 'port_full' })).toBe(10)
    expect(upstream.accepted()).toBe(3)
    const full = logs.entries().filter((l) => l.msg === 'data-plane port full; connections refused')
    expect(full[0]).toMatchObject({ level: 40, spoke: SPOKE, upstream: 'a', maxConnections: 3, refused: 1 })
    expect(full.length).toBeLessThan(10)
    for (const socket of held) expect(socket.destroyed).toBe(false)
  })

  test('idle connections filling port a (at its cap) do not stop traffic through port b of the same session', async () => {
    // A session of 5 streams: the control stream and 4 data streams. Port a may take 3 of them, port b 1.
    const { registry, ports } = await startRig({ a: 'maxConnections: 3', b: 'maxConnections: 1' }, { mux: { maxStreams: 5 } })
    for (let i = 0; i < 3; i++) await idleConnection(ports.a)
    await waitFor(async () => await metricValue(registry, 'spokelink_streams_active', { upstream: 'a' }) === 3, { what: 'port a to hold 3 streams' })
    const refused = await Promise.all(Array.from({ length: 5 }, async () => howItEnds(ports.a)))
    expect(refused).toEqual(Array.from({ length: 5 }, () => 'ECONNRESET'))
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'a', result: 'port_full' })).toBe(5)
    expect(await echoThrough(ports.b, 256 * 1024, 11)).toBe(expectedSha256(256 * 1024, 11))
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'b', result: 'ok' })).toBe(1)
  })

  test('default caps that add up to more than the session can carry are scaled down so each port keeps a share', async () => {
    // Two ports at the default 256 in a session of 5 streams (4 for data): each is fitted to 2.
    const { registry, ports } = await startRig({}, { mux: { maxStreams: 5 } })
    for (let i = 0; i < 2; i++) await idleConnection(ports.a)
    await waitFor(async () => await metricValue(registry, 'spokelink_streams_active', { upstream: 'a' }) === 2, { what: 'port a to hold 2 streams' })
    const refused = await Promise.all(Array.from({ length: 4 }, async () => howItEnds(ports.a)))
    expect(refused).toEqual(Array.from({ length: 4 }, () => 'ECONNRESET'))
    expect(await echoThrough(ports.b, 64 * 1024, 3)).toBe(expectedSha256(64 * 1024, 3))
    expect(await metricValue(registry, 'spokelink_streams_total', { upstream: 'b', result: 'open_failed' })).toBe(0)
    const scaled = logs.entries().find((l) => l.msg === 'data-plane port caps scaled down to fit the session stream budget')
    expect(scaled).toMatchObject({ level: 40, streamBudget: 4, maxConnections: { a: 2, b: 2 } })
  })
})
