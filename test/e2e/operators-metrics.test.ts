/**
 * Issue 11: the operators' view by value after real traffic. In-process exit-node and agents on loopback sockets,
 * a real HTTP upstream, raw keep-alive clients whose bytes the test counts itself.
 */
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { createAgent, startAgentHealthServer } from '@spokelink/agent'
import type { AgentOptions } from '@spokelink/agent'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken, SpokesConfig } from '@spokelink/auth'
import { createLogCapture, freePort, sampleValue, waitFor } from '@spokelink/testkit'
import { validateExitNodeOptions } from '@spokelink/exit-node'
import { FAST_BACKOFF, listen, startExitNode } from './in-process-tunnel.js'

const logs = createLogCapture()

beforeEach(() => {
  logs.clear()
  onTestFailed(() => { process.stderr.write(`--- logs of the failed test ---\n${logs.text()}`) })
})

const testLogger = (name: string): Logger => logs.logger(name)

const EXPIRY = '2031-05-04T03:02:01Z'
const SMALL_BODY = 'x'.repeat(300)

interface Spoke { name: string, token: CreatedSpokeToken, dataPort: number, expires?: string }

function spokesYaml (spokes: readonly Spoke[]): SpokesConfig {
  return parseSpokesConfig(['spokes:', ...spokes.flatMap((spoke) => [
    `  - name: ${spoke.name}`,
    `    tokens: [{id: "${spoke.token.id}", sha256: "${spoke.token.sha256}"${spoke.expires === undefined ? '' : `, expires: "${spoke.expires}"`}}]`,
    `    ports: [{upstream: prometheus, listen: "127.0.0.1:${spoke.dataPort}"}]`,
  ]), ''].join('\n'), 'test')
}

/** An upstream answering `GET /small` with a fixed body (keep-alive) and draining `POST /upload`. */
async function startUpstream (): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume()
    req.once('end', () => {
      const body = req.url === '/small' ? SMALL_BODY : 'ok'
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  return listen(server)
}

/** A raw keep-alive client that counts every byte it sends and receives. */
class CountingClient {
  readonly socket: net.Socket
  sent = 0
  received = 0
  #buffer = ''
  constructor (port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.setEncoding('latin1')
    this.socket.on('data', (chunk: string) => {
      this.received += chunk.length
      this.#buffer += chunk
    })
    onTestFinished(() => { this.socket.destroy() })
  }

  /** Sends one request and waits for a whole response (content-length framed). */
  async request (head: string, body = ''): Promise<void> {
    const text = `${head}\r\nhost: spoke\r\ncontent-length: ${body.length}\r\n\r\n${body}`
    this.sent += Buffer.byteLength(text, 'latin1')
    this.socket.write(text, 'latin1')
    await waitFor(() => {
      const end = this.#buffer.indexOf('\r\n\r\n')
      if (end < 0) return false
      const length = Number(/content-length: (\d+)/i.exec(this.#buffer.slice(0, end))?.[1] ?? NaN)
      if (this.#buffer.length < end + 4 + length) return false
      this.#buffer = this.#buffer.slice(end + 4 + length)
      return true
    }, { timeoutMs: 30_000, what: `an answer to ${head}` })
  }
}

async function scrape (adminPort: number, path = '/metrics'): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`)
  return res.text()
}

function agentOptions (url: string, spoke: Spoke, upstreamPort: number, extra: Partial<AgentOptions> = {}): AgentOptions {
  return { server: url, token: spoke.token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }], agentName: `${spoke.name}-agent`, backoff: FAST_BACKOFF, keepaliveIntervalMs: 100, ...extra }
}

async function startTestAgent (options: AgentOptions, logger: Logger): Promise<{ agent: ReturnType<typeof createAgent>, registry: Registry }> {
  const registry = new Registry()
  const agent = createAgent(options, { logger, registry })
  onTestFinished(async () => { await agent.close({ graceMs: 0 }) })
  const connected = once(agent, 'connected', { signal: AbortSignal.timeout(10_000) })
  agent.start()
  await connected
  return { agent, registry }
}

describe('exit-node fleet metrics', () => {
  test('bytes are counted while a keep-alive connection stays open, and every configured spoke has its series', async () => {
    const upstreamPort = await startUpstream()
    const alpha: Spoke = { name: 'alpha', token: createSpokeToken(), dataPort: await freePort(), expires: EXPIRY }
    const never: Spoke = { name: 'never-onboarded', token: createSpokeToken(), dataPort: await freePort() }
    const { url, adminPort } = await startExitNode(spokesYaml([alpha, never]), testLogger('exit-node'), { keepaliveIntervalMs: 100, infoLabels: ['region'] })
    const { registry: agentRegistry } = await startTestAgent(agentOptions(url, alpha, upstreamPort, { labels: { region: 'eu-west', customer_secret: 'x' } }), testLogger('agent'))

    const client = new CountingClient(alpha.dataPort)
    for (let i = 0; i < 5; i++) await client.request('GET /small HTTP/1.1')
    // A 4 MiB upload is 16 initial stream windows: the exit-node's writer must wait for credit.
    await client.request('POST /upload HTTP/1.1', 'u'.repeat(4 * 1024 * 1024))
    expect(client.socket.destroyed).toBe(false)

    const text = await scrape(adminPort)
    // The connection is still open: these are the bytes as they flowed, exactly what the client sent and got.
    expect(sampleValue(text, 'spokelink_bytes_total', { spoke: 'alpha', direction: 'in' })).toBe(client.sent)
    expect(sampleValue(text, 'spokelink_bytes_total', { spoke: 'alpha', direction: 'out' })).toBe(client.received)
    expect(client.received).toBeGreaterThan(5 * SMALL_BODY.length)
    expect(sampleValue(text, 'spokelink_stream_window_stalls_total', { spoke: 'alpha' })).toBeGreaterThanOrEqual(1)

    expect(sampleValue(text, 'spokelink_spoke_connected', { spoke: 'alpha' })).toBe(1)
    expect(sampleValue(text, 'spokelink_spoke_connected', { spoke: 'never-onboarded' })).toBe(0)
    expect(sampleValue(text, 'spokelink_spoke_sessions', { spoke: 'alpha' })).toBe(1)
    expect(sampleValue(text, 'spokelink_spoke_sessions', { spoke: 'never-onboarded' })).toBe(0)
    expect(sampleValue(text, 'spokelink_spoke_last_seen_timestamp_seconds', { spoke: 'never-onboarded' })).toBe(0)
    expect(Math.abs((sampleValue(text, 'spokelink_spoke_last_seen_timestamp_seconds', { spoke: 'alpha' }) ?? 0) - Date.now() / 1000)).toBeLessThan(60)
    expect(sampleValue(text, 'spokelink_spoke_token_expiry_timestamp_seconds', { spoke: 'alpha' })).toBe(Date.parse(EXPIRY) / 1000)
    expect(sampleValue(text, 'spokelink_spoke_token_expiry_timestamp_seconds', { spoke: 'never-onboarded' })).toBeUndefined()
    // Only allow-listed hello labels become labels: customer_secret is not one.
    expect(sampleValue(text, 'spokelink_spoke_info', { spoke: 'alpha', agent_version: '0.1.0', label_region: 'eu-west' })).toBe(1)
    expect(text).not.toContain('customer_secret')
    expect(sampleValue(text, 'spokelink_session_opens_total', { spoke: 'alpha' })).toBe(1)

    await waitFor(async () => (sampleValue(await scrape(adminPort), 'spokelink_session_rtt_seconds', { spoke: 'alpha' }) ?? 0) > 0, { timeoutMs: 30_000, what: 'an exit-node RTT from yamux pings' })
    const agentText = await agentRegistry.metrics()
    await waitFor(async () => (sampleValue(await agentRegistry.metrics(), 'spokelink_agent_session_rtt_seconds') ?? 0) > 0, { timeoutMs: 30_000, what: 'an agent RTT from yamux pings' })
    expect(sampleValue(agentText, 'spokelink_agent_connected')).toBe(1)
    expect(sampleValue(agentText, 'spokelink_agent_permanent_failure')).toBe(0)

    // /v1/spokes says the same.
    const fleet = JSON.parse(await scrape(adminPort, '/v1/spokes')) as { spokes: Array<Record<string, unknown>> }
    expect(fleet.spokes.map((s) => [s.spoke, s.connected, s.sessions, s.agentVersion, s.bytesIn, s.tokenExpiry])).toEqual([
      ['alpha', true, 1, '0.1.0', client.sent, '2031-05-04T03:02:01.000Z'],
      ['never-onboarded', false, 0, '', 0, null],
    ])
  })

  test('a disconnect keeps last seen; a reload adds a spoke at 0 and deletes the series of a removed one', async () => {
    const upstreamPort = await startUpstream()
    const alpha: Spoke = { name: 'alpha', token: createSpokeToken(), dataPort: await freePort() }
    const beta: Spoke = { name: 'beta', token: createSpokeToken(), dataPort: await freePort() }
    const { url, adminPort, exitNode } = await startExitNode(spokesYaml([alpha, beta]), testLogger('exit-node'))
    const { agent } = await startTestAgent(agentOptions(url, alpha, upstreamPort), testLogger('agent'))
    const client = new CountingClient(alpha.dataPort)
    await client.request('GET /small HTTP/1.1')
    await agent.close({ graceMs: 0 })
    await waitFor(async () => sampleValue(await scrape(adminPort), 'spokelink_spoke_connected', { spoke: 'alpha' }) === 0, { timeoutMs: 30_000, what: 'alpha disconnected' })
    const text = await scrape(adminPort)
    expect(sampleValue(text, 'spokelink_spoke_last_seen_timestamp_seconds', { spoke: 'alpha' })).toBeGreaterThan(0)
    expect(sampleValue(text, 'spokelink_spoke_sessions', { spoke: 'alpha' })).toBe(0)
    expect(sampleValue(text, 'spokelink_bytes_total', { spoke: 'alpha', direction: 'in' })).toBe(client.sent)

    const gamma: Spoke = { name: 'gamma', token: createSpokeToken(), dataPort: await freePort() }
    exitNode.updateSpokes(spokesYaml([beta, gamma]))
    const after = await scrape(adminPort)
    expect(after).not.toMatch(/spoke="alpha"/)
    expect(sampleValue(after, 'spokelink_spoke_connected', { spoke: 'gamma' })).toBe(0)
    expect(sampleValue(after, 'spokelink_spoke_connected', { spoke: 'beta' })).toBe(0)
  })

  test('the status page escapes what agents send', async () => {
    const upstreamPort = await startUpstream()
    const alpha: Spoke = { name: 'alpha', token: createSpokeToken(), dataPort: await freePort() }
    const { url, adminPort } = await startExitNode(spokesYaml([alpha]), testLogger('exit-node'))
    await startTestAgent(agentOptions(url, alpha, upstreamPort, { agentVersion: '<img src=x onerror=alert(1)>"\'&' }), testLogger('agent'))
    const page = await scrape(adminPort, '/status')
    expect(page).toContain('&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;')
    expect(page).not.toContain('<img')
    expect(page).toContain('<meta http-equiv="refresh" content="5">')
    expect(page).not.toMatch(/<script|<link|src="http/)
  })
})

describe('info labels at their limits', () => {
  test('at most 16 allow-listed names; values and the agent version are cut to 128 characters', async () => {
    expect(() => validateExitNodeOptions({ infoLabels: Array.from({ length: 17 }, (_, i) => `l${i}`) })).toThrow(expect.objectContaining({ code: 'SLK_ERR_EXIT_INVALID_OPTION' }))
    expect(validateExitNodeOptions({ infoLabels: Array.from({ length: 16 }, (_, i) => `l${i}`) }).infoLabels).toHaveLength(16)
    expect(() => validateExitNodeOptions({ infoLabels: ['bad-name'] })).toThrow(expect.objectContaining({ code: 'SLK_ERR_EXIT_INVALID_OPTION' }))
    const upstreamPort = await startUpstream()
    const alpha: Spoke = { name: 'alpha', token: createSpokeToken(), dataPort: await freePort() }
    const { url, adminPort } = await startExitNode(spokesYaml([alpha]), testLogger('exit-node'), { infoLabels: ['region'] })
    await startTestAgent(agentOptions(url, alpha, upstreamPort, { labels: { region: 'r'.repeat(129) }, agentVersion: 'v'.repeat(64) }), testLogger('agent'))
    const text = await scrape(adminPort)
    expect(sampleValue(text, 'spokelink_spoke_info', { spoke: 'alpha', agent_version: 'v'.repeat(64), label_region: 'r'.repeat(128) })).toBe(1)
  })
})

describe('agent permanent failures', () => {
  test('a revoked token: /readyz names the refusal, one error line, metrics say so, and the backoff grows past the normal cap', async () => {
    const alpha: Spoke = { name: 'alpha', token: createSpokeToken(), dataPort: await freePort() }
    const other = createSpokeToken()
    const { url } = await startExitNode(spokesYaml([{ ...alpha, token: other }]), testLogger('exit-node'))
    const registry = new Registry()
    const agent = createAgent(agentOptions(url, alpha, 1, { backoff: { initialDelayMs: 20, maxDelayMs: 40 }, permanentFailureMaxDelayMs: 300 }),
      { logger: testLogger('agent'), registry, rng: () => 0.999 })
    onTestFinished(async () => { await agent.close({ graceMs: 0 }) })
    const health = await startAgentHealthServer({ host: '127.0.0.1', port: 0 }, agent, { registry, logger: testLogger('agent-health') })
    onTestFinished(() => { health.close() })
    const healthPort = (health.address() as net.AddressInfo).port
    agent.start()
    const retries = (): number[] => logs.entries().filter((l) => l.name === 'agent' && (l.msg === 'reconnecting' || l.level === 50)).map((l) => Number(l.retryInMs))
    await waitFor(() => retries().length >= 6, { timeoutMs: 30_000, what: 'six refused attempts' })
    // Full jitter with rng 0.999: the ceilings 20, 40, 80, 160, 300, 300: past the normal cap of 40.
    expect(retries().slice(0, 6)).toEqual([19, 39, 79, 159, 299, 299])
    const errors = logs.entries().filter((l) => l.name === 'agent' && l.level === 50)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ msg: 'disconnected', code: 'SLK_ERR_AGENT_UNAUTHORIZED', permanent: true })
    expect(logs.text()).not.toContain(alpha.token.token)
    const text = await registry.metrics()
    expect(sampleValue(text, 'spokelink_agent_last_connect_error', { code: 'SLK_ERR_AGENT_UNAUTHORIZED' })).toBe(1)
    expect(sampleValue(text, 'spokelink_agent_permanent_failure')).toBe(1)
    expect(sampleValue(text, 'spokelink_agent_connected')).toBe(0)
    expect(agent.permanentFailure?.code).toBe('SLK_ERR_AGENT_UNAUTHORIZED')
    const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`)
    expect(ready.status).toBe(503)
    expect(await ready.text()).toMatch(/^refused: SLK_ERR_AGENT_UNAUTHORIZED: exit-node 127\.0\.0\.1:\d+ refused the token \(401\): .+\n$/)
  })
})
