import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  freePort,
  isPrometheusInstalled,
  killAllProcesses,
  prometheusConfig,
  runSpokelink,
  spokesYaml,
  startFixtureExporter,
  startPrometheus,
  waitFor,
} from '@spokelink/testkit'
import type { FixtureExporter, RunningProcess, RunningPrometheus } from '@spokelink/testkit'

// The hub federates two spokes through one exit-node, everything as real processes: the built
// `spokelink` CLI (server, agents, token create) and Debian's Prometheus (two spokes, one hub).
// Never skipped: without Prometheus, startPrometheus fails with the install hint (.ci/run installs it).

const SPOKES = ['orion-aws', 'orion-gcp'] as const
type Spoke = typeof SPOKES[number]

/** Distinct values per spoke, so a mix-up between the two tunnels shows in the data. */
const FIXTURE_VALUES: Record<Spoke, { reading: number, build: string }> = {
  'orion-aws': { reading: 11.25, build: 'aws-1' },
  'orion-gcp': { reading: 42.5, build: 'gcp-7' },
}

function fixtureMetrics (spoke: Spoke): string {
  const { reading, build } = FIXTURE_VALUES[spoke]
  return [
    '# HELP fed_fixture_reading A per-spoke constant.',
    '# TYPE fed_fixture_reading gauge',
    `fed_fixture_reading{sensor="a"} ${reading}`,
    '# HELP fed_fixture_build_info Per-spoke build label.',
    '# TYPE fed_fixture_build_info gauge',
    `fed_fixture_build_info{build="${build}"} 1`,
    '',
  ].join('\n')
}

const SCRAPE_MS = 1000
const SHUTDOWN_GRACE_MS = 3000

interface SpokeRig {
  exporter: FixtureExporter
  prometheus: RunningPrometheus
  dataPort: number
  token: string
  agent?: RunningProcess
}

describe('hub Prometheus federates two spokes through spokelink (child processes, real Prometheus)', () => {
  let dir: string
  const rigs = new Map<Spoke, SpokeRig>()
  const prometheuses: RunningPrometheus[] = []
  /** Every spokelink child except `token create` (whose stdout is where the token is meant to appear). */
  const children: RunningProcess[] = []
  const tokenCreators: RunningProcess[] = []

  beforeAll(async () => {
    // Throws in CI when Prometheus is missing; locally it just tells why the next step fails.
    isPrometheusInstalled()
    dir = await mkdtemp(join(tmpdir(), 'spokelink-federation-'))
  })

  afterAll(async () => {
    await killAllProcesses()
    await Promise.all(prometheuses.map(async (p) => { await p.close() }))
    await Promise.all([...rigs.values()].map(async (rig) => { await rig.exporter.close() }))
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('each spoke\'s series reach the hub with their cluster label; /v1/sd; agent loss → up 0; SIGTERM', async () => {
    // 1. Spokes: a fixture exporter each, scraped every second by a Prometheus with its cluster label.
    for (const spoke of SPOKES) {
      const exporter = await startFixtureExporter({ metrics: fixtureMetrics(spoke) })
      const prometheus = await startPrometheus({
        name: `spoke-${spoke}`,
        config: prometheusConfig({
          scrapeIntervalMs: SCRAPE_MS,
          globalLabels: { cluster: spoke },
          jobs: [{ name: 'fixture', targets: [exporter.target] }],
        }),
      })
      prometheuses.push(prometheus)
      rigs.set(spoke, { exporter, prometheus, dataPort: await freePort(), token: '' })
    }
    const rig = (spoke: Spoke): SpokeRig => {
      const found = rigs.get(spoke)
      if (found === undefined) throw new Error(`no rig for ${spoke}`)
      return found
    }

    // 2. Spokes file with one data-plane port per spoke, then a token per spoke via the CLI.
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, `# exit-node spokes for the federation e2e test\n${spokesYaml(SPOKES.map((spoke) => ({
      name: spoke,
      labels: { cluster: spoke },
      tokens: [],
      ports: [{ upstream: 'prometheus', port: rig(spoke).dataPort }],
    })))}`)
    for (const spoke of SPOKES) {
      const create = runSpokelink(['token', 'create', '--spokes', spokesFile, '--spoke', spoke, '--output', 'json'], { name: `token create ${spoke}` })
      tokenCreators.push(create)
      expect(await create.waitForExit()).toEqual({ code: 0, signal: null })
      expect(create.stderrLines).toEqual([])
      const jsonLines = create.stdoutLines.filter((line) => line !== '')
      expect(jsonLines).toHaveLength(1)
      const created = JSON.parse(jsonLines[0] ?? '') as { token: unknown, spoke: unknown }
      expect(created.spoke).toBe(spoke)
      expect(created.token).toMatch(/^slk_[a-z0-9]+_[A-Za-z0-9_-]+$/)
      rig(spoke).token = String(created.token)
    }

    // 3. The exit-node, on a port of its own choosing.
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, '--shutdown-grace', `${SHUTDOWN_GRACE_MS}ms`])
    children.push(server)
    const listening = await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'the server\'s listening line', timeoutMs: 30_000 })
    const controlPort = Number(listening.port)
    expect(controlPort).toBeGreaterThan(0)
    const adminListening = await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'admin', { what: 'the server\'s admin listening line', timeoutMs: 30_000 })
    const adminPort = Number(adminListening.port)
    expect(adminPort).toBeGreaterThan(0)

    // 4. One agent per spoke, token in the environment only.
    for (const spoke of SPOKES) {
      const agent = runSpokelink([
        'agent',
        '--server', `ws://127.0.0.1:${controlPort}/connect`,
        '--upstream', `prometheus=${rig(spoke).prometheus.target}`,
        '--name', `agent-${spoke}`,
      ], { name: `agent ${spoke}`, env: { SPOKELINK_TOKEN: rig(spoke).token } })
      children.push(agent)
      rig(spoke).agent = agent
      expect(agent.child.spawnargs.join(' ')).not.toContain(rig(spoke).token)
    }
    for (const spoke of SPOKES) {
      const connected = await rig(spoke).agent?.waitForLog((e) => e.msg === 'connected', { what: `agent ${spoke} connected`, timeoutMs: 30_000 })
      expect(connected?.spoke).toBe(spoke)
    }

    // 5. The hub: one /federate job per spoke on its data-plane port, and one job discovering via /v1/sd.
    const sdUrl = `http://127.0.0.1:${adminPort}/v1/sd`
    const hub = await startPrometheus({
      name: 'hub',
      config: prometheusConfig({
        scrapeIntervalMs: SCRAPE_MS,
        jobs: [
          ...SPOKES.map((spoke) => ({
            name: `federate-${spoke}`,
            targets: [`127.0.0.1:${rig(spoke).dataPort}`],
            metricsPath: '/federate',
            honorLabels: true,
            params: { 'match[]': ['{job!=""}'] },
          })),
          { name: 'spokelink-sd', httpSdUrls: [sdUrl] },
        ],
      }),
    })
    prometheuses.push(hub)

    // 6. Each spoke's fixture series arrive with that spoke's cluster label and that spoke's values.
    for (const spoke of SPOKES) {
      const { reading, build } = FIXTURE_VALUES[spoke]
      const samples = await waitFor(async () => {
        const result = await hub.query(`fed_fixture_reading{cluster="${spoke}"}`)
        return result.length > 0 ? result : undefined
      }, { what: `fed_fixture_reading{cluster="${spoke}"} on the hub`, timeoutMs: 60_000, intervalMs: 250 })
      expect(samples).toHaveLength(1)
      expect(samples[0]?.metric).toMatchObject({ __name__: 'fed_fixture_reading', cluster: spoke, job: 'fixture', sensor: 'a', instance: rig(spoke).exporter.target })
      expect(Number(samples[0]?.value[1])).toBe(reading)
      const info = await waitFor(async () => {
        const result = await hub.query(`fed_fixture_build_info{cluster="${spoke}"}`)
        return result.length > 0 ? result : undefined
      }, { what: `fed_fixture_build_info{cluster="${spoke}"} on the hub`, timeoutMs: 30_000, intervalMs: 250 })
      expect(info.map((s) => s.metric.build)).toEqual([build])
    }
    // No series crossed over: every reading on the hub belongs to the spoke whose value it carries.
    const allReadings = await hub.query('fed_fixture_reading')
    expect(allReadings.map((s) => [s.metric.cluster, Number(s.value[1])]).sort()).toEqual(
      SPOKES.map((spoke) => [spoke, FIXTURE_VALUES[spoke].reading]).sort()
    )

    // 7. /v1/sd lists both spokes as connected …
    const sd = await waitFor(async () => {
      const res = await fetch(sdUrl, { signal: AbortSignal.timeout(5000) })
      expect(res.status).toBe(200)
      return await res.json() as Array<{ targets: string[], labels: Record<string, string> }>
    }, { what: '/v1/sd to answer', timeoutMs: 30_000 })
    for (const spoke of SPOKES) {
      const groups = sd.filter((g) => g.labels.__meta_spokelink_spoke === spoke)
      expect(groups).toHaveLength(1)
      expect(groups[0]).toMatchObject({
        targets: [`127.0.0.1:${rig(spoke).dataPort}`],
        labels: { __meta_spokelink_connected: 'true', __meta_spokelink_upstream: 'prometheus', __meta_spokelink_label_cluster: spoke },
      })
    }
    // … and the hub's http_sd job finds both data-plane ports and scrapes them successfully.
    await waitFor(async () => {
      const { activeTargets } = await hub.targets()
      const sdTargets = activeTargets.filter((t) => t.scrapePool === 'spokelink-sd')
      expect(sdTargets.map((t) => t.labels.instance).sort()).toEqual(SPOKES.map((spoke) => `127.0.0.1:${rig(spoke).dataPort}`).sort())
      expect(sdTargets.map((t) => t.health)).toEqual(['up', 'up'])
      return true
    }, { what: 'both spokelink-sd targets up on the hub', timeoutMs: 30_000, intervalMs: 250 })
    for (const spoke of SPOKES) {
      await waitFor(async () => {
        const up = await hub.query(`up{job="federate-${spoke}"}`)
        return up.length === 1 && up[0]?.value[1] === '1'
      }, { what: `up{job="federate-${spoke}"} == 1`, timeoutMs: 30_000, intervalMs: 250 })
    }

    // 8. Losing orion-gcp's agent: its data-plane port closes, so the hub's scrape fails (refused) → up 0.
    const gcpAgent = rig('orion-gcp').agent
    expect((await gcpAgent?.kill('SIGKILL'))?.signal).toBe('SIGKILL')
    await server.waitForLog((e) => e.msg === 'session closed' && e.spoke === 'orion-gcp', { what: 'the exit-node to close orion-gcp\'s session', timeoutMs: 30_000 })
    const gcpDown = await waitFor(async () => {
      const { activeTargets } = await hub.targets()
      const target = activeTargets.find((t) => t.scrapePool === 'federate-orion-gcp')
      const up = await hub.query('up{job="federate-orion-gcp"}')
      // A scrape caught in flight when the agent died fails differently; the next one must be refused at once.
      const refused = /connection refused/i.test(target?.lastError ?? '')
      return target?.health === 'down' && refused && up.length === 1 && up[0]?.value[1] === '0' ? target : undefined
    }, { what: 'up{job="federate-orion-gcp"} == 0 with "connection refused"', timeoutMs: 30_000, intervalMs: 250 })
    expect(gcpDown.lastError).toMatch(/connection refused/i)
    // orion-aws never dropped: every sample of its up in the last 5 s (spanning the kill) is 1.
    const awsUp = await hub.query('min_over_time(up{job="federate-orion-aws"}[5s])')
    expect(awsUp.map((s) => s.value[1])).toEqual(['1'])
    expect((await hub.query('up{job="federate-orion-aws"}')).map((s) => s.value[1])).toEqual(['1'])
    await waitFor(async () => {
      const res = await fetch(sdUrl, { signal: AbortSignal.timeout(5000) })
      const groups = await res.json() as Array<{ labels: Record<string, string> }>
      const connected = Object.fromEntries(groups.map((g) => [g.labels.__meta_spokelink_spoke, g.labels.__meta_spokelink_connected]))
      expect(connected).toEqual({ 'orion-aws': 'true', 'orion-gcp': 'false' })
      return true
    }, { what: '/v1/sd to show orion-gcp disconnected', timeoutMs: 30_000 })

    // 9. SIGTERM: the exit-node drains, logs 'shut down' and exits 0 within its grace period.
    const killed = server.kill('SIGTERM')
    const exit = await server.waitForExit({ timeoutMs: SHUTDOWN_GRACE_MS + 2000 })
    expect(exit).toEqual({ code: 0, signal: null })
    await killed
    expect(server.logs.some((e) => e.msg === 'shut down')).toBe(true)
    // The surviving agent saw a planned restart (close 1001 after the GoAway), logged at info, not a dropped socket.
    const restarting = await rig('orion-aws').agent?.waitForLog((e) => e.msg === 'exit-node restarting', { what: 'the agent to log the planned restart', timeoutMs: 30_000 })
    expect(restarting).toMatchObject({ level: 30, closeCode: 1001, code: 'SLK_ERR_AGENT_SERVER_RESTARTING' })
    expect(restarting?.reason).toContain('1001 exit-node shutting down')
    expect(await rig('orion-aws').agent?.kill('SIGTERM')).toEqual({ code: 0, signal: null })

    // 10. No token in any output of the server, the agents or the Prometheus servers.
    const tokens = SPOKES.map((spoke) => rig(spoke).token)
    for (const proc of [...children, ...prometheuses.map((p) => p.process)]) {
      const output = proc.output()
      for (const token of tokens) {
        expect(output.includes(token), `${proc.name} printed a token`).toBe(false)
        // The secret part alone must not leak either.
        expect(output.includes(token.split('_').slice(2).join('_')), `${proc.name} printed a token secret`).toBe(false)
      }
    }
    for (const create of tokenCreators) expect(create.stderrLines.join('\n')).toBe('')
  })
})
