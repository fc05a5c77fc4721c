/**
 * The agent's HTTP policy (`--read-only`, issue 10 part 1) end to end on real loopback sockets: exit-node
 * and agent in-process, the upstream a plain Node HTTP server behind a recording TCP relay, so a test
 * can prove a refused request never reached the upstream (not one byte of it).
 */
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import { createAgent, parseHttpPolicies } from '@spokelink/agent'
import type { Agent, AgentOptions } from '@spokelink/agent'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { createExitNode } from '@spokelink/exit-node'
import type { ExitNode } from '@spokelink/exit-node'
import {
  POLICY_ATTACKS,
  createLogCapture,
  deterministicSource,
  expectedSha256,
  freePort,
  hashStream,
  listenLoopback,
  spokesYaml,
  startRecordingRelay,
  waitFor,
} from '@spokelink/testkit'
import type { RecordingRelay } from '@spokelink/testkit'

const MiB = 1024 * 1024
const FEDERATE_BYTES = 32 * MiB
const FEDERATE_SEED = 10

const logs = createLogCapture()
beforeEach(() => {
  logs.clear()
  onTestFailed(() => { process.stderr.write(`--- spokelink logs of the failed test ---\n${logs.text()}`) })
})
const testLogger = (name: string): Logger => logs.logger(name)

/**
 * Plays Prometheus: answers every request with what it saw (`seen METHOD URL BODY`), and `/federate`
 * with `FEDERATE_BYTES` of deterministic data; `/federate?hold` sends 64 KiB and then waits for
 * `release()`, to show the agent forwards a body while the upstream is still sending it.
 */
function startFakePrometheus (): { server: http.Server, release: () => void } {
  let releaseHeld: (() => void) | undefined
  const released = new Promise<void>((resolve) => { releaseHeld = resolve })
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      if (req.url === '/federate?hold') {
        res.writeHead(200, { 'Content-Type': 'text/plain' })
        res.write(Buffer.alloc(64 * 1024, 'a'))
        void released.then(() => { res.end('end\n') })
        return
      }
      if (req.url?.startsWith('/federate') === true) {
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4', 'X-Upstream': 'fake-prometheus' })
        pipeline(deterministicSource(FEDERATE_BYTES, FEDERATE_SEED), res).catch(() => { /* the client left */ })
        return
      }
      const body = `seen ${req.method ?? ''} ${req.url ?? ''} ${Buffer.concat(chunks).toString('utf8')}\n`
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), 'X-Upstream': 'fake-prometheus' })
      res.end(body)
    })
  })
  return { server, release: () => { releaseHeld?.() } }
}

interface PolicedTunnel {
  dataPort: number
  relay: RecordingRelay
  registry: Registry
  release: () => void
  close: () => Promise<void>
}

async function startPolicedTunnel (agentOptions: Partial<AgentOptions> = {}, upstreamPort?: number): Promise<PolicedTunnel> {
  const closers: Array<() => Promise<void>> = []
  const fake = startFakePrometheus()
  const sockets = new Set<net.Socket>()
  fake.server.on('connection', (socket) => { sockets.add(socket) })
  const fakePort = await listenLoopback(fake.server)
  closers.push(async () => {
    for (const socket of sockets) socket.destroy()
    fake.server.close()
  })
  const relay = await startRecordingRelay({ host: '127.0.0.1', port: fakePort })
  closers.push(relay.close)
  const token = createSpokeToken()
  const dataPort = await freePort()
  const spokes = parseSpokesConfig(spokesYaml([{ name: 'orion', tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), 'test')
  const exitNode: ExitNode = createExitNode({ host: '127.0.0.1', port: 0, adminPort: 0, shutdownGraceMs: 200 }, spokes, { logger: testLogger('exit-node'), registry: new Registry() })
  const { port } = await exitNode.listen()
  closers.push(async () => { await exitNode.close() })
  const registry = new Registry()
  const agent: Agent = createAgent({
    server: `ws://127.0.0.1:${port}/connect`,
    token: token.token,
    agentName: 'policy-agent',
    backoff: { initialDelayMs: 50, maxDelayMs: 200 },
    upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort ?? relay.port }],
    policies: parseHttpPolicies(['prometheus'], []),
    ...agentOptions,
  }, { logger: testLogger('agent'), registry })
  const connected = once(agent, 'connected', { signal: AbortSignal.timeout(10_000) })
  agent.start()
  await connected
  closers.unshift(async () => { await agent.close({ graceMs: 0 }) })
  return {
    dataPort,
    relay,
    registry,
    release: fake.release,
    close: async () => { for (const close of closers) await close() },
  }
}

async function connectTcp (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect', { signal: AbortSignal.timeout(5000) })
  return socket
}

/** Sends `raw` on a fresh connection and reads until the far end closes. */
async function exchange (port: number, raw: string | string[]): Promise<string> {
  const socket = await connectTcp(port)
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { received.push(chunk) })
  const ended = once(socket, 'end', { signal: AbortSignal.timeout(10_000) })
  for (const part of Array.isArray(raw) ? raw : [raw]) {
    await new Promise<void>((resolve, reject) => { socket.write(part, (err) => { if (err == null) resolve(); else reject(err) }) })
  }
  await ended
  socket.end()
  return Buffer.concat(received).toString('latin1')
}

interface ParsedResponse { status: number, headers: Record<string, string>, body: string }

/** Splits a run of HTTP/1.1 responses with Content-Length bodies (what these tests get back). */
function parseResponses (text: string): ParsedResponse[] {
  const responses: ParsedResponse[] = []
  let rest = text
  while (rest.length > 0) {
    const headEnd = rest.indexOf('\r\n\r\n')
    if (headEnd < 0) throw new Error(`incomplete response head: ${JSON.stringify(rest.slice(0, 200))}`)
    const [statusLine = '', ...headerLines] = rest.slice(0, headEnd).split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of headerLines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'] ?? '0')
    responses.push({ status: Number(statusLine.split(' ')[1]), headers, body: rest.slice(headEnd + 4, headEnd + 4 + length) })
    rest = rest.slice(headEnd + 4 + length)
  }
  return responses
}

async function deniedCount (registry: Registry, reason: string): Promise<number> {
  const metric = await registry.getSingleMetric('spokelink_policy_denied_total')?.get()
  return metric?.values.find((v) => v.labels.reason === reason && v.labels.upstream === 'prometheus')?.value ?? 0
}

describe('--read-only prometheus: every forbidden or ambiguous request gets 403 and never reaches the upstream', () => {
  let tunnel: PolicedTunnel
  beforeAll(async () => { tunnel = await startPolicedTunnel() })
  afterAll(async () => { await tunnel.close() })

  test.each(POLICY_ATTACKS.map((attack) => [attack.name, attack] as const))('%s', async (_name, attack) => {
    const before = await deniedCount(tunnel.registry, attack.reason)
    const text = await exchange(tunnel.dataPort, attack.raw)
    const [response, ...more] = parseResponses(text)
    expect(more).toEqual([])
    expect(response?.status).toBe(403)
    expect(response?.headers['spokelink-policy-reason']).toBe(attack.reason)
    expect(response?.headers.connection).toBe('close')
    expect(response?.body).toMatch(/^spokelink: \S+ \S* ?denied by read-only policy on upstream prometheus\n$|^spokelink: malformed request denied by read-only policy on upstream prometheus \(\w+\)\n$/)
    expect(response?.body.split('\n')).toHaveLength(2)
    expect(await deniedCount(tunnel.registry, attack.reason)).toBe(before + 1)
    expect(tunnel.relay.received()).not.toContain(attack.marker)
  })

  test('the 403 line names the method and path (clipped to 128 characters), never the query', async () => {
    const text = await exchange(tunnel.dataPort, `DELETE /api/v1/admin/${'x'.repeat(300)}?secret-ish=1 HTTP/1.1\r\nHost: h\r\n\r\n`)
    const [response] = parseResponses(text)
    expect(response?.body).toBe(`spokelink: DELETE /api/v1/admin/${'x'.repeat(128 - '/api/v1/admin/'.length)}... denied by read-only policy on upstream prometheus\n`)
    expect(logs.text()).not.toContain('secret-ish')
  })
})

describe('--read-only prometheus: allowed requests reach the upstream intact', () => {
  let tunnel: PolicedTunnel
  beforeAll(async () => { tunnel = await startPolicedTunnel({ policy: { maxBodyBytes: 1024, maxHeaderBytes: 2048 } }) })
  afterAll(async () => { await tunnel.close() })

  test('keep-alive: the read paths, HEAD, and POST queries (form, Content-Length and chunked) on one connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    onTestFinished(() => { agent.destroy() })
    const sockets = new Set<unknown>()
    const request = async (method: string, path: string, body?: string, chunked = false): Promise<{ status: number, text: string, headers: http.IncomingHttpHeaders }> => {
      return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: tunnel.dataPort, method, path, agent, headers: body === undefined ? {} : { 'Content-Type': 'application/x-www-form-urlencoded', ...(chunked ? {} : { 'Content-Length': Buffer.byteLength(body) }) } }, (res) => {
          sockets.add(res.socket)
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
          res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }) })
        })
        req.on('error', reject)
        if (body !== undefined && chunked) {
          // One chunk per character: a body split over many chunks (and frames).
          for (const char of body) req.write(char)
          req.end()
        } else req.end(body)
      })
    }
    const paths = ['/metrics', '/api/v1/query?query=up', '/api/v1/query_range?query=up&start=1&end=2&step=1', '/api/v1/series?match[]=up',
      '/api/v1/labels', '/api/v1/label/job/values', '/api/v1/label/__name__/values', '/api/v1/metadata', '/-/healthy', '/-/ready']
    for (const path of paths) {
      const res = await request('GET', path)
      expect(res).toMatchObject({ status: 200, text: `seen GET ${path} \n` })
      expect(res.headers['x-upstream']).toBe('fake-prometheus')
    }
    const head = await request('HEAD', '/api/v1/labels')
    expect(head).toMatchObject({ status: 200, text: '' })
    expect(head.headers['content-length']).toBe(String('seen HEAD /api/v1/labels \n'.length))
    expect(await request('POST', '/api/v1/query', 'query=sum(up)&time=1')).toMatchObject({ status: 200, text: 'seen POST /api/v1/query query=sum(up)&time=1\n' })
    expect(await request('POST', '/api/v1/query_range', 'query=rate(x[5m])&start=1&end=2&step=1', true)).toMatchObject({ status: 200, text: 'seen POST /api/v1/query_range query=rate(x[5m])&start=1&end=2&step=1\n' })
    // All of it over one TCP connection to the data plane.
    expect(sockets.size).toBe(1)
    // The chunked body went upstream whole, with its length: the upstream sees exactly the checked request.
    const upstreamSaw = tunnel.relay.received()
    expect(upstreamSaw).toMatch(/POST \/api\/v1\/query_range HTTP\/1\.1\r\n(?:[^\r\n]+\r\n)*Content-Length: 38\r\n(?:[^\r\n]+\r\n)*\r\nquery=rate\(x\[5m\]\)&start=1&end=2&step=1/)
    expect(upstreamSaw).not.toMatch(/transfer-encoding/i)
  })

  test('pipelined: each request is checked in order; the first refused one ends the stream and nothing after it is forwarded', async () => {
    const text = await exchange(tunnel.dataPort, [
      'GET /api/v1/labels?pipe-1 HTTP/1.1\r\nHost: h\r\n\r\n' +
      'POST /api/v1/query?pipe-2 HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nque\r\n5\r\nry=up\r\n0\r\n\r\n' +
      'DELETE /api/v1/series?pipe-3 HTTP/1.1\r\nHost: h\r\n\r\n' +
      'GET /api/v1/labels?pipe-4 HTTP/1.1\r\nHost: h\r\n\r\n',
    ])
    const responses = parseResponses(text)
    expect(responses.map((r) => [r.status, r.body])).toEqual([
      [200, 'seen GET /api/v1/labels?pipe-1 \n'],
      [200, 'seen POST /api/v1/query?pipe-2 query=up\n'],
      [403, 'spokelink: DELETE /api/v1/series denied by read-only policy on upstream prometheus\n'],
    ])
    const upstreamSaw = tunnel.relay.received()
    expect(upstreamSaw).toContain('GET /api/v1/labels?pipe-1 HTTP/1.1\r\n')
    expect(upstreamSaw).toContain('POST /api/v1/query?pipe-2 HTTP/1.1\r\n')
    expect(upstreamSaw.indexOf('pipe-1')).toBeLessThan(upstreamSaw.indexOf('pipe-2'))
    expect(tunnel.relay.received()).not.toContain('pipe-3')
    expect(tunnel.relay.received()).not.toContain('pipe-4')
  })

  test('a request split into one-byte writes is parsed like a whole one', async () => {
    const request = 'GET /api/v1/query?query=split HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
    const text = await exchange(tunnel.dataPort, [...request])
    expect(parseResponses(text).map((r) => [r.status, r.body])).toEqual([[200, 'seen GET /api/v1/query?query=split \n']])
    const smuggled = 'GET /api/v1/query?query=fine HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n'
    const refused = parseResponses(await exchange(tunnel.dataPort, [...smuggled]))
    expect(refused.map((r) => r.status)).toEqual([403])
    expect(tunnel.relay.received()).not.toContain('query=fine')
  })

  test('limits: a form body of exactly maxBodyBytes passes, one byte more is refused (Content-Length and chunked), as is a head over maxHeaderBytes', async () => {
    const form = (bytes: number, tag: string): string => `q=${tag}`.padEnd(bytes, 'x')
    const post = (body: string, chunked: boolean): string => chunked
      ? `POST /api/v1/query HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
      : `POST /api/v1/query HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
    for (const chunked of [false, true]) {
      const fits = parseResponses(await exchange(tunnel.dataPort, post(form(1024, `fits${String(chunked)}`), chunked)))
      expect(fits.map((r) => r.status)).toEqual([200])
      expect(fits[0]?.body).toBe(`seen POST /api/v1/query ${form(1024, `fits${String(chunked)}`)}\n`)
      const over = parseResponses(await exchange(tunnel.dataPort, post(form(1025, `over${String(chunked)}`), chunked)))
      expect(over.map((r) => [r.status, r.headers['spokelink-policy-reason']])).toEqual([[403, 'body_too_large']])
      expect(tunnel.relay.received()).not.toContain(`over${String(chunked)}`)
    }
    const head = (bytes: number, tag: string): string => {
      const start = `GET /api/v1/query?${tag} HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Pad: `
      return `${start}${'p'.repeat(bytes - start.length - 4)}\r\n\r\n`
    }
    expect(parseResponses(await exchange(tunnel.dataPort, head(2048, 'head-fits'))).map((r) => r.status)).toEqual([200])
    const tooBig = parseResponses(await exchange(tunnel.dataPort, head(2049, 'head-over')))
    expect(tooBig.map((r) => [r.status, r.headers['spokelink-policy-reason']])).toEqual([[403, 'header_too_large']])
    expect(tunnel.relay.received()).not.toContain('head-over')
  })

  test('/federate streams: 32 MiB arrive byte-exact, and the first bytes arrive while the upstream still holds the rest', async () => {
    const res = await fetch(`http://127.0.0.1:${tunnel.dataPort}/federate?match[]=up`, { signal: AbortSignal.timeout(60_000) })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-upstream')).toBe('fake-prometheus')
    if (res.body === null) throw new Error('no body')
    const { sha256, bytes } = await hashStream(res.body)
    expect(bytes).toBe(FEDERATE_BYTES)
    expect(sha256).toBe(expectedSha256(FEDERATE_BYTES, FEDERATE_SEED))

    const held = await fetch(`http://127.0.0.1:${tunnel.dataPort}/federate?hold`, { signal: AbortSignal.timeout(30_000) })
    const reader = held.body?.getReader()
    if (reader === undefined) throw new Error('no body')
    let received = 0
    while (received < 64 * 1024) {
      const { value, done } = await reader.read()
      if (done) throw new Error('the body ended before the upstream was released')
      received += value.length
    }
    // The upstream has not finished its response yet, and the client already has every byte it sent.
    expect(received).toBe(64 * 1024)
    tunnel.release()
    let rest = ''
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += Buffer.from(chunk.value).toString('utf8')
    expect(rest).toBe('end\n')
  })
})

describe('--read-only with the upstream down', () => {
  test('an allowed request gets a one-line 502 and the dial error is counted', async () => {
    const closed = net.createServer()
    const deadPort = await listenLoopback(closed)
    closed.close()
    await once(closed, 'close')
    const tunnel = await startPolicedTunnel({}, deadPort)
    onTestFinished(tunnel.close)
    const [response] = parseResponses(await exchange(tunnel.dataPort, 'GET /federate HTTP/1.1\r\nHost: h\r\n\r\n'))
    expect(response).toMatchObject({ status: 502, body: 'spokelink: upstream prometheus failed: ECONNREFUSED\n' })
    await waitFor(async () => (await tunnel.registry.getSingleMetricAsString('spokelink_upstream_dial_errors_total')).includes('spokelink_upstream_dial_errors_total{upstream="prometheus"} 1'), { what: 'the dial error counted', timeoutMs: 30_000 })
  })
})
