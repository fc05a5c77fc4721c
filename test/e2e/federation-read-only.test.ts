import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  POLICY_ATTACKS,
  freePort,
  isPrometheusInstalled,
  killAllProcesses,
  prometheusConfig,
  runSpokelink,
  startFixtureExporter,
  startPrometheus,
  startRecordingRelay,
  waitFor,
} from '@spokelink/testkit'
import type { FixtureExporter, RecordingRelay, RunningPrometheus } from '@spokelink/testkit'

// The federation e2e again, with `--read-only prometheus` on the agent (issue 10, part 1): the built CLI
// as child processes, Debian's Prometheus as spoke and hub, and a recording TCP relay between the agent
// and the spoke Prometheus — the upstream's request log — to prove refused requests never reach it.

const SPOKE = 'orion-aws'
const SCRAPE_MS = 1000
const MAX_FORM_BYTES = 4096
const FIXTURE = [
  '# HELP ro_fixture_reading A constant.',
  '# TYPE ro_fixture_reading gauge',
  'ro_fixture_reading{sensor="a"} 7.25',
  '',
].join('\n')

/** Sends `raw` on a fresh connection and reads until the far end closes. */
async function exchange (port: number, raw: string): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  try {
    await once(socket, 'connect', { signal: AbortSignal.timeout(5000) })
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => { received.push(chunk) })
    const ended = once(socket, 'end', { signal: AbortSignal.timeout(10_000) })
    socket.write(raw)
    await ended
    return Buffer.concat(received).toString('latin1')
  } finally {
    socket.destroy()
  }
}

describe('hub Prometheus federates a spoke whose agent runs --read-only prometheus (child processes, real Prometheus)', () => {
  let dir: string
  let exporter: FixtureExporter | undefined
  let relay: RecordingRelay | undefined
  const prometheuses: RunningPrometheus[] = []

  beforeAll(async () => {
    isPrometheusInstalled()
    dir = await mkdtemp(join(tmpdir(), 'spokelink-read-only-'))
  })

  afterAll(async () => {
    await killAllProcesses()
    await Promise.all(prometheuses.map(async (p) => { await p.close() }))
    await exporter?.close()
    await relay?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('federation and the query API work; every forbidden request gets 403 and never reaches Prometheus', async () => {
    exporter = await startFixtureExporter({ metrics: FIXTURE })
    const spoke = await startPrometheus({
      name: 'spoke',
      config: prometheusConfig({ scrapeIntervalMs: SCRAPE_MS, globalLabels: { cluster: SPOKE }, jobs: [{ name: 'fixture', targets: [exporter.target] }] }),
    })
    prometheuses.push(spoke)
    relay = await startRecordingRelay({ host: '127.0.0.1', port: spoke.port })
    const dataPort = await freePort()

    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, ['spokes:', `  - name: ${SPOKE}`, '    tokens: []', '    ports:', `      - {upstream: prometheus, listen: "127.0.0.1:${dataPort}"}`, ''].join('\n'))
    const create = runSpokelink(['token', 'create', '--spokes', spokesFile, '--spoke', SPOKE, '--output', 'json'], { name: 'token create' })
    expect(await create.waitForExit()).toEqual({ code: 0, signal: null })
    const token = String((JSON.parse(create.stdoutLines.find((line) => line !== '') ?? '{}') as { token?: unknown }).token)

    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, '--shutdown-grace', '2s'])
    const listening = await server.waitForLog((e) => e.msg === 'listening', { what: 'the server\'s listening line', timeoutMs: 30_000 })
    const agent = runSpokelink([
      'agent',
      '--server', `ws://127.0.0.1:${Number(listening.port)}/connect`,
      '--upstream', `prometheus=${relay.target}`,
      '--read-only', 'prometheus',
      '--policy-max-body-bytes', String(MAX_FORM_BYTES),
      '--health-listen', '127.0.0.1:0',
      '--log-level', 'debug',
    ], { name: 'agent', env: { SPOKELINK_TOKEN: token } })
    const health = await agent.waitForLog((e) => e.msg === 'listening', { what: 'the agent health server', timeoutMs: 30_000 })
    await agent.waitForLog((e) => e.msg === 'connected', { what: 'the agent connected', timeoutMs: 30_000 })

    // 1. The hub federates the spoke through the policy.
    const hub = await startPrometheus({
      name: 'hub',
      config: prometheusConfig({
        scrapeIntervalMs: SCRAPE_MS,
        jobs: [{ name: 'federate', targets: [`127.0.0.1:${dataPort}`], metricsPath: '/federate', honorLabels: true, params: { 'match[]': ['{job!=""}'] } }],
      }),
    })
    prometheuses.push(hub)
    const samples = await waitFor(async () => {
      const result = await hub.query(`ro_fixture_reading{cluster="${SPOKE}"}`)
      return result.length > 0 ? result : undefined
    }, { what: 'the spoke\'s series on the hub', timeoutMs: 60_000, intervalMs: 250 })
    expect(samples.map((s) => [s.metric.cluster, s.metric.job, Number(s.value[1])])).toEqual([[SPOKE, 'fixture', 7.25]])

    // 2. The query API through the data-plane port: GET and a POST form, as Grafana sends them.
    const base = `http://127.0.0.1:${dataPort}`
    const getQuery = await fetch(`${base}/api/v1/query?query=${encodeURIComponent('ro_fixture_reading')}`, { signal: AbortSignal.timeout(10_000) })
    expect(getQuery.status).toBe(200)
    const getBody = await getQuery.json() as { status: string, data: { result: Array<{ value: [number, string] }> } }
    expect(getBody.status).toBe('success')
    expect(getBody.data.result.map((r) => r.value[1])).toEqual(['7.25'])
    const postQuery = await fetch(`${base}/api/v1/query`, { method: 'POST', body: new URLSearchParams({ query: 'sum(ro_fixture_reading) * 2' }), signal: AbortSignal.timeout(10_000) })
    const postBody = await postQuery.json() as { data: { result: Array<{ value: [number, string] }> } }
    expect(postBody.data.result.map((r) => r.value[1])).toEqual(['14.5'])
    const labels = await fetch(`${base}/api/v1/label/sensor/values`, { signal: AbortSignal.timeout(10_000) })
    expect(await labels.json()).toEqual({ status: 'success', data: ['a'] })
    expect((await fetch(`${base}/-/ready`, { signal: AbortSignal.timeout(10_000) })).status).toBe(200)
    // --policy-max-body-bytes: a form of exactly the limit reaches Prometheus, one byte more is refused.
    const formOf = (bytes: number): string => { const head = 'query=ro_fixture_reading&pad='; return head + 'p'.repeat(bytes - head.length) }
    const atLimit = await fetch(`${base}/api/v1/query`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: formOf(MAX_FORM_BYTES), signal: AbortSignal.timeout(10_000) })
    expect(((await atLimit.json()) as { data: { result: Array<{ value: [number, string] }> } }).data.result.map((r) => r.value[1])).toEqual(['7.25'])
    const overLimit = await fetch(`${base}/api/v1/query`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: formOf(MAX_FORM_BYTES + 1), signal: AbortSignal.timeout(10_000) })
    expect([overLimit.status, overLimit.headers.get('spokelink-policy-reason')]).toEqual([403, 'body_too_large'])
    await overLimit.arrayBuffer()

    // 3. Every forbidden or ambiguous request: 403, one line, and not one byte of it reaches Prometheus.
    const expectedCounts = new Map<string, number>()
    for (const attack of POLICY_ATTACKS) {
      const text = await exchange(dataPort, attack.raw)
      expect(text, attack.name).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/)
      expect(text, attack.name).toContain(`\r\nSpokelink-Policy-Reason: ${attack.reason}\r\n`)
      expect(text.slice(text.indexOf('\r\n\r\n') + 4), attack.name).toMatch(/^spokelink: [^\n]* policy on upstream prometheus[^\n]*\n$/)
      expectedCounts.set(attack.reason, (expectedCounts.get(attack.reason) ?? 0) + 1)
    }
    const upstreamSaw = relay.received()
    for (const attack of POLICY_ATTACKS) expect(upstreamSaw.includes(attack.marker), `${attack.name} reached Prometheus`).toBe(false)
    expect(upstreamSaw).not.toMatch(/admin|\/-\/quit|\/-\/reload|status\/config/)
    expect(relay.requestLines().map((line) => line.split(' ')[0]).filter((method) => method !== 'GET' && method !== 'POST')).toEqual([])
    // Prometheus itself is unharmed: still up, the series still there.
    expect((await spoke.query('ro_fixture_reading')).map((s) => s.value[1])).toEqual(['7.25'])

    // 4. The agent counts each refusal by reason.
    const metrics = await (await fetch(`http://127.0.0.1:${Number(health.port)}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    expectedCounts.set('body_too_large', 1)
    for (const [reason, count] of expectedCounts) {
      expect(metrics).toContain(`spokelink_policy_denied_total{upstream="prometheus",reason="${reason}"} ${count}`)
    }
    // Refusals are logged (debug each, warn sampled) without headers or the query string.
    const denials = agent.logs.filter((e) => e.msg === 'request denied by policy')
    expect(denials.length).toBeGreaterThan(POLICY_ATTACKS.length)
    expect(agent.output()).not.toContain('match[]=up')
    expect(agent.output()).not.toContain(token.split('_').slice(2).join('_'))

    // As in the federation test: the exit-node goes first (its GoAway ends the hub's keep-alive streams).
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })
})
