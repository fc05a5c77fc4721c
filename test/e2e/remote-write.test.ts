import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  freePort,
  isPrometheusInstalled,
  killAllProcesses,
  listenLoopback,
  prometheusConfig,
  runSpokelink,
  startFixtureExporter,
  startPrometheus,
  waitFor,
} from '@spokelink/testkit'
import type { FixtureExporter, RunningProcess, RunningPrometheus } from '@spokelink/testkit'

// Both directions through one exit-node, everything real: spoke "orion-aws" runs Prometheus in agent mode that
// remote-writes through its spokelink agent's --hub-service listener to the hub Prometheus (remote-write receiver);
// spoke "orion-gcp" is federated by the hub over its data-plane port, and is not allowed the hub service.
// Never skipped: without Prometheus, startPrometheus fails with the install hint (.ci/run installs it).

const SCRAPE_MS = 1000
/** How long the hub's receiver is down; Prometheus's queue (WAL-backed) must hold the samples meanwhile. */
const RECEIVER_DOWN_MS = 20_000

async function tokenFor (spokesFile: string, spoke: string): Promise<string> {
  const create = runSpokelink(['token', 'create', '--spokes', spokesFile, '--spoke', spoke, '--output', 'json'], { name: `token create ${spoke}` })
  expect(await create.waitForExit()).toEqual({ code: 0, signal: null })
  return String((JSON.parse(create.stdoutLines.filter((line) => line !== '')[0] ?? '{}') as { token: unknown }).token)
}

/** A TCP listener no configuration names: any connection to it is a dial the exit-node must never make. */
async function startCanary (): Promise<{ port: number, connections: () => number, close: () => void }> {
  let connections = 0
  const server = net.createServer((socket) => { connections++; socket.destroy() })
  const port = await listenLoopback(server)
  return { port, connections: () => connections, close: () => { server.close() } }
}

/** The hub's count of the spoke's `fixture_requests_total` samples and the highest value among them. */
async function hubSamples (hub: RunningPrometheus, cluster: string): Promise<{ count: number, max: number }> {
  const [count] = await hub.query(`count_over_time(fixture_requests_total{cluster="${cluster}"}[1h])`)
  const [max] = await hub.query(`max_over_time(fixture_requests_total{cluster="${cluster}"}[1h])`)
  return { count: Number(count?.value[1] ?? 0), max: Number(max?.value[1] ?? 0) }
}

describe('remote write through the tunnel (child processes, real Prometheus in agent mode)', () => {
  let dir: string
  const closers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    isPrometheusInstalled()
    dir = await mkdtemp(join(tmpdir(), 'spokelink-remote-write-'))
  })

  afterAll(async () => {
    await killAllProcesses()
    for (const close of closers.reverse()) await close().catch(() => {})
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('the spoke\'s series reach the hub with its cluster label while a second spoke is federated; a spoke not allowed is refused; nothing else is dialed; a receiver down 20 s loses no sample', async () => {
    const canary = await startCanary()
    closers.push(async () => { canary.close() })

    // 1. The hub: a Prometheus with the remote-write receiver, on a port and data dir it keeps across its restart.
    const hubPort = await freePort()
    const hubDir = join(dir, 'hub')
    const hubGcpDataPort = await freePort()
    const hubConfig = prometheusConfig({
      scrapeIntervalMs: SCRAPE_MS,
      jobs: [{ name: 'federate-orion-gcp', targets: [`127.0.0.1:${hubGcpDataPort}`], federate: true }],
    })
    const startHub = async (): Promise<RunningPrometheus> => {
      const hub = await startPrometheus({ name: 'hub', config: hubConfig, port: hubPort, dataDir: hubDir, extraArgs: ['--web.enable-remote-write-receiver'] })
      closers.push(async () => { await hub.close() })
      return hub
    }
    await mkdir(hubDir, { recursive: true })
    let hub = await startHub()

    // 2. The exit-node: orion-aws may reach remote-write (the hub's receiver, POST /api/v1/write only); orion-gcp is federated and has no hub service.
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, [
      'spokes:',
      '  - name: orion-aws',
      '    labels: {cluster: orion-aws}',
      '    tokens: []',
      '    ports: []',
      '    hubServices:',
      `      - {name: remote-write, address: "127.0.0.1:${hubPort}", allow: ["POST /api/v1/write"]}`,
      '  - name: orion-gcp',
      '    labels: {cluster: orion-gcp}',
      '    tokens: []',
      '    ports:',
      `      - {upstream: prometheus, listen: "127.0.0.1:${hubGcpDataPort}"}`,
      '',
    ].join('\n'))
    const awsToken = await tokenFor(spokesFile, 'orion-aws')
    const gcpToken = await tokenFor(spokesFile, 'orion-gcp')
    const check = runSpokelink(['server', '--check-config', '--spokes', spokesFile], { name: 'check-config' })
    expect(await check.waitForExit()).toEqual({ code: 0, signal: null })
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, '--shutdown-grace', '1s'], { name: 'server' })
    const controlPort = Number((await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'the control listener', timeoutMs: 30_000 })).port)
    const adminPort = Number((await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'admin', { what: 'the admin listener', timeoutMs: 30_000 })).port)

    // 3. Spoke orion-aws: its agent listens for remote-write; its Prometheus in agent mode scrapes a fixture and writes there.
    const awsListenPort = await freePort()
    const awsAgent = runSpokelink(['agent', '--server', `ws://127.0.0.1:${controlPort}/connect`, '--upstream', `unused=127.0.0.1:${canary.port}`,
      '--hub-service', `remote-write=127.0.0.1:${awsListenPort}`, '--name', 'agent-orion-aws'], { name: 'agent orion-aws', env: { SPOKELINK_TOKEN: awsToken } })
    await awsAgent.waitForLog((e) => e.msg === 'connected', { what: 'agent orion-aws connected', timeoutMs: 30_000 })
    const awsExporter: FixtureExporter = await startFixtureExporter()
    closers.push(async () => { await awsExporter.close() })
    const awsPrometheus = await startPrometheus({
      name: 'spoke-orion-aws',
      agent: true,
      config: prometheusConfig({
        scrapeIntervalMs: SCRAPE_MS,
        globalLabels: { cluster: 'orion-aws' },
        jobs: [{ name: 'fixture', targets: [awsExporter.target] }],
        remoteWrite: [{ url: `http://127.0.0.1:${awsListenPort}/api/v1/write` }],
      }),
    })
    closers.push(async () => { await awsPrometheus.close() })

    // 4. Spoke orion-gcp: a plain Prometheus federated by the hub; its agent also tries remote-write, which it may not.
    const gcpExporter = await startFixtureExporter()
    closers.push(async () => { await gcpExporter.close() })
    const gcpPrometheus = await startPrometheus({
      name: 'spoke-orion-gcp',
      config: prometheusConfig({ scrapeIntervalMs: SCRAPE_MS, globalLabels: { cluster: 'orion-gcp' }, jobs: [{ name: 'fixture', targets: [gcpExporter.target] }] }),
    })
    closers.push(async () => { await gcpPrometheus.close() })
    const gcpListenPort = await freePort()
    const gcpAgent = runSpokelink(['agent', '--server', `ws://127.0.0.1:${controlPort}/connect`, '--upstream', `prometheus=${gcpPrometheus.target}`,
      '--hub-service', `remote-write=127.0.0.1:${gcpListenPort}`, '--name', 'agent-orion-gcp'], { name: 'agent orion-gcp', env: { SPOKELINK_TOKEN: gcpToken } })
    await gcpAgent.waitForLog((e) => e.msg === 'connected', { what: 'agent orion-gcp connected', timeoutMs: 30_000 })

    // 5. The hub finds orion-aws's series, with its cluster label, written through the tunnel …
    const written = await waitFor(async () => {
      const result = await hub.query('fixture_up{cluster="orion-aws"}')
      return result.length > 0 ? result : undefined
    }, { what: 'fixture_up{cluster="orion-aws"} remote-written to the hub', timeoutMs: 60_000, intervalMs: 500 })
    expect(written[0]?.metric).toMatchObject({ __name__: 'fixture_up', cluster: 'orion-aws', job: 'fixture', instance: awsExporter.target })
    // … and orion-gcp's, federated over the same exit-node at the same time.
    const federated = await waitFor(async () => {
      const result = await hub.query('fixture_up{cluster="orion-gcp"}')
      return result.length > 0 ? result : undefined
    }, { what: 'fixture_up{cluster="orion-gcp"} federated by the hub', timeoutMs: 60_000, intervalMs: 500 })
    expect(federated[0]?.metric).toMatchObject({ cluster: 'orion-gcp', job: 'fixture', instance: gcpExporter.target })

    // … through the allow list: remote write passed it, while a query on the same hub service is refused by the exit-node.
    const query = await fetch(`http://127.0.0.1:${awsListenPort}/api/v1/query?query=up`, { signal: AbortSignal.timeout(10_000) })
    expect({ status: query.status, reason: query.headers.get('spokelink-policy-reason'), body: await query.text() })
      .toEqual({ status: 403, reason: 'method', body: 'spokelink: GET /api/v1/query denied by allow policy on hub service remote-write\n' })

    // 6. orion-gcp is not allowed the hub service: its remote-write connection is refused with the reason, fast.
    const refusedAt = await fetch(`http://127.0.0.1:${gcpListenPort}/api/v1/write`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(10_000) }).then(
      (res) => `HTTP ${res.status}`,
      (err: unknown) => err instanceof Error && err.cause instanceof Error && 'code' in err.cause ? String(err.cause.code) : String(err))
    expect(refusedAt).not.toMatch(/^HTTP|TimeoutError/)
    const refusal = await gcpAgent.waitForLog((e) => e.msg === 'hub stream refused by the exit-node', { what: 'agent orion-gcp logging the refusal', timeoutMs: 30_000 })
    expect(refusal).toMatchObject({ hubService: 'remote-write', code: 'SLK_ERR_PROTO_HUB_SERVICE_REFUSED' })
    expect(String(refusal.reason)).toContain('spoke orion-gcp may not reach hub service "remote-write"')

    // 7. The hub's receiver stops for 20 s and comes back on its port with its data: the spoke keeps scraping into its
    //    queue, remote-write fails fast through the tunnel (retried), and afterwards every sample is on the hub.
    await hub.process.kill()
    await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
      return /spokelink_hub_streams_total\{spoke="orion-aws",service="remote-write",result="dial_failed"\} [1-9]/.test(text)
    }, { what: 'the exit-node failing to dial the stopped receiver', timeoutMs: 30_000, intervalMs: 250 })
    const scrapesBefore = awsExporter.requests
    await waitFor(() => awsExporter.requests >= scrapesBefore + RECEIVER_DOWN_MS / SCRAPE_MS, { what: `${RECEIVER_DOWN_MS} ms of scrapes while the receiver is down`, timeoutMs: 2 * RECEIVER_DOWN_MS, intervalMs: 250 })
    hub = await startHub()
    // The spoke stops scraping (an empty job list), so the exporter's count is final: values 1..N, one per scrape.
    await awsPrometheus.reload(prometheusConfig({
      scrapeIntervalMs: SCRAPE_MS,
      globalLabels: { cluster: 'orion-aws' },
      jobs: [],
      remoteWrite: [{ url: `http://127.0.0.1:${awsListenPort}/api/v1/write` }],
    }))
    const produced = await waitFor(async () => {
      const before = awsExporter.requests
      const { count } = await hubSamples(hub, 'orion-aws')
      return count === before && awsExporter.requests === before ? before : undefined
    }, { what: 'the hub to hold one sample per scrape the spoke made', timeoutMs: 90_000, intervalMs: 1000 })
    expect(produced).toBeGreaterThan(RECEIVER_DOWN_MS / SCRAPE_MS)
    expect(await hubSamples(hub, 'orion-aws')).toEqual({ count: produced, max: produced })

    // 8. Bytes were counted per spoke and service; the canary, which no configuration names, saw no connection.
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
    expect(metrics).toMatch(/spokelink_hub_bytes_total\{spoke="orion-aws",service="remote-write",direction="to_hub"\} [1-9]/)
    expect(metrics).toMatch(/spokelink_hub_streams_total\{spoke="orion-gcp",service="_unlisted",result="not_allowed"\} [1-9]/)
    expect(metrics).toMatch(/spokelink_hub_policy_denied_total\{spoke="orion-aws",service="remote-write",reason="method"\} 1\n/)
    expect(canary.connections()).toBe(0)
    for (const child of [server, awsAgent, gcpAgent] satisfies RunningProcess[]) expect(child.exit).toBeUndefined()
  })
})
