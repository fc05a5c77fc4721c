/**
 * Issue 11: the shipped alerts and dashboard against real parts. promtool tests every alert on synthetic series;
 * a real Prometheus scrapes a real `spokelink server` (CLI child) with a real agent, and every PromQL expression of
 * the dashboard (with `$spoke` and `$__rate_interval` filled in) and of the alerts must parse and the dashboard's
 * must return data. `spokelink status` reads the same exit-node.
 */
import { execFile } from 'node:child_process'
import http from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { createSpokeToken } from '@spokelink/auth'
import {
  freePort,
  isPrometheusInstalled,
  killAllProcesses,
  prometheusConfig,
  runSpokelink,
  startFixtureExporter,
  startPrometheus,
  waitFor,
} from '@spokelink/testkit'
import type { FixtureExporter, RunningPrometheus } from '@spokelink/testkit'

const CHART = fileURLToPath(new URL('../../charts/spokelink-exit-node/', import.meta.url))
const EXPIRY = '2031-06-07T08:09:10Z'

interface DashboardPanel { type: string, title: string, panels?: DashboardPanel[], targets?: Array<{ expr?: string }>, repeat?: string }
interface Dashboard { uid: string, title: string, panels: DashboardPanel[], templating: { list: Array<{ name: string, type: string, multi?: boolean, includeAll?: boolean }> } }

async function promtool (args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('promtool', args, { cwd: CHART, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`promtool ${args.join(' ')} failed: ${stdout}${stderr}`))
      else resolve(stdout + stderr)
    })
  })
}

function dashboardExprs (dashboard: Dashboard): string[] {
  const walk = (panels: DashboardPanel[]): string[] => panels.flatMap((panel) => [
    ...(panel.targets ?? []).map((target) => target.expr).filter((expr) => expr !== undefined),
    ...walk(panel.panels ?? []),
  ])
  return walk(dashboard.panels)
}

describe('alerts', () => {
  test('promtool: the rules file is valid and every alert fires on its synthetic series (and only there)', async () => {
    expect(await promtool(['check', 'rules', 'files/alerts.yaml'])).toContain('SUCCESS: 5 rules found')
    expect(await promtool(['test', 'rules', 'files/alerts.test.yaml'])).toContain('SUCCESS')
    const rules = parseYaml(await readFile(join(CHART, 'files/alerts.yaml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> }
    expect(rules.groups.flatMap((group) => group.rules.map((rule) => rule.alert))).toEqual(['SpokeDown', 'SpokeFlapping', 'SpokeTokenExpiringSoon', 'ExitNodeAuthFailuresHigh', 'SpokeScrapeSlow'])
    // The chart embeds the same file, so what promtool tested is what is installed.
    expect(await readFile(join(CHART, 'templates/prometheusrule.yaml'), 'utf8')).toContain('.Files.Get "files/alerts.yaml"')
    expect(await readFile(join(CHART, 'templates/grafana-dashboard.yaml'), 'utf8')).toContain('.Files.Get "files/dashboard.json"')
  })
})

describe('dashboard and spokelink status against a real exit-node and Prometheus', () => {
  let dir = ''
  let exporter: FixtureExporter | undefined
  let prometheus: RunningPrometheus | undefined

  beforeAll(async () => {
    isPrometheusInstalled()
    dir = await mkdtemp(join(tmpdir(), 'spokelink-dashboard-'))
  })

  afterAll(async () => {
    await killAllProcesses()
    await prometheus?.close()
    await exporter?.close()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  test('every dashboard expression parses and returns data; every alert expression parses; status prints the fleet', async () => {
    const dashboard = JSON.parse(await readFile(join(CHART, 'files/dashboard.json'), 'utf8')) as Dashboard
    expect(dashboard.uid).toBe('spokelink-fleet')
    expect(dashboard.templating.list.find((v) => v.name === 'spoke')).toMatchObject({ type: 'query', multi: true, includeAll: true })
    expect(dashboard.panels.some((panel) => panel.type === 'row' && panel.repeat === 'spoke')).toBe(true)
    const exprs = dashboardExprs(dashboard)
    expect(exprs.length).toBeGreaterThanOrEqual(10)

    exporter = await startFixtureExporter()
    const orion = { token: createSpokeToken(), dataPort: await freePort() }
    const idle = { token: createSpokeToken(), dataPort: await freePort() }
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, [
      'spokes:',
      '  - name: orion-aws',
      `    tokens: [{id: "${orion.token.id}", sha256: "${orion.token.sha256}", expires: "${EXPIRY}"}]`,
      `    ports: [{upstream: prometheus, listen: "127.0.0.1:${orion.dataPort}"}]`,
      '  - name: idle-spoke',
      `    tokens: [{id: "${idle.token.id}", sha256: "${idle.token.sha256}"}]`,
      `    ports: [{upstream: prometheus, listen: "127.0.0.1:${idle.dataPort}"}]`,
      '',
    ].join('\n'))
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, '--keepalive', '2s', '--info-labels', 'region'])
    const control = Number((await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { timeoutMs: 30_000 })).port)
    const adminPort = Number((await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'admin', { timeoutMs: 30_000 })).port)
    const agent = runSpokelink(['agent', '--server', `ws://127.0.0.1:${control}/connect`, '--upstream', `prometheus=${exporter.target}`, '--keepalive', '2s', '--label', 'region=eu-west'],
      { env: { ...process.env, SPOKELINK_TOKEN: orion.token.token } })
    await agent.waitForLog((e) => e.msg === 'connected', { timeoutMs: 30_000 })
    // One refused upgrade, so the auth-failure panel has a series.
    await new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: control, path: '/connect', headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-protocol': 'spokelink.v1', authorization: 'Bearer slk_aaaaaaaa_wrongwrongwrongwrongwrongwrong' } }, (res) => { res.resume(); res.once('end', resolve) })
        .once('error', reject)
    })

    prometheus = await startPrometheus({ name: 'hub', config: prometheusConfig({ jobs: [{ name: 'spokelink-exit-node', targets: [`127.0.0.1:${adminPort}`] }] }) })
    const running = prometheus
    // Keep scraping through the tunnel until Prometheus has seen the byte counters grow between two of its scrapes.
    await waitFor(async () => {
      expect((await fetch(`http://127.0.0.1:${orion.dataPort}/metrics`)).status).toBe(200)
      return (await running.query('spokelink_session_rtt_seconds')).length > 0 && (await running.query('rate(spokelink_bytes_total[10s]) > 0')).length > 0 &&
        (await running.query('rate(spokelink_streams_opened_total[10s])')).length > 0
    }, { timeoutMs: 30_000, what: 'an RTT and a byte rate in Prometheus' })

    const results = Object.fromEntries(await Promise.all(exprs.map(async (expr) => {
      const query = expr.replaceAll('$__rate_interval', '10s').replaceAll('$spoke', 'orion-aws')
      return [expr, (await running.query(query)).length] as const
    })))
    expect(Object.entries(results).filter(([, count]) => count === 0)).toEqual([])
    // The never-connected spoke has its 0, the connected one its 1.
    const connected = await running.query('spokelink_spoke_connected')
    expect(Object.fromEntries(connected.map((s) => [s.metric.spoke, s.value[1]]))).toEqual({ 'orion-aws': '1', 'idle-spoke': '0' })
    expect((await running.query('spokelink_spoke_info{label_region="eu-west",agent_version="0.1.0"}')).map((s) => s.metric.spoke)).toEqual(['orion-aws'])

    const rules = parseYaml(await readFile(join(CHART, 'files/alerts.yaml'), 'utf8')) as { groups: Array<{ rules: Array<{ expr: string }> }> }
    for (const rule of rules.groups.flatMap((group) => group.rules)) await running.query(rule.expr)
    // SpokeDown's condition holds for the idle spoke right now (the alert waits 5 m on top).
    expect((await running.query(rules.groups[0]?.rules[0]?.expr ?? '')).map((s) => s.metric.spoke)).toEqual(['idle-spoke'])

    // spokelink status: the table and the JSON.
    const table = runSpokelink(['status', '--admin', `http://127.0.0.1:${adminPort}`])
    expect(await table.waitForExit()).toEqual({ code: 0, signal: null })
    const lines = table.stdoutLines.filter((line) => line !== '')
    expect(lines[0]).toMatch(/^SPOKE\s+CONNECTED\s+SESSIONS\s+AGENT\s+RTT\s+BYTES IN\s+BYTES OUT\s+LAST SEEN\s+TOKEN EXPIRY$/)
    expect(lines[1]).toMatch(/^orion-aws\s+yes\s+1\s+0\.1\.0\s+\d+\.\dms\s+\d+(\.\d)? (B|KiB)\s+\d+(\.\d)? (B|KiB)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+2031-06-07 08:09:10Z$/)
    expect(lines[2]).toMatch(/^idle-spoke\s+no\s+0\s+-\s+-\s+0 B\s+0 B\s+never\s+none$/)
    const json = runSpokelink(['status', '--admin', `http://127.0.0.1:${adminPort}`, '--output', 'json'])
    expect(await json.waitForExit()).toEqual({ code: 0, signal: null })
    const fleet = JSON.parse(json.stdoutLines.join('')) as { spokes: Array<{ spoke: string, connected: boolean, tokenExpiry: string | null, labels: Record<string, string> }> }
    expect(fleet.spokes.map((s) => [s.spoke, s.connected, s.tokenExpiry, s.labels])).toEqual([
      ['orion-aws', true, '2031-06-07T08:09:10.000Z', { region: 'eu-west' }],
      ['idle-spoke', false, null, {}],
    ])
    // Nothing listening: one error line, exit 1.
    const down = runSpokelink(['status', '--admin', `http://127.0.0.1:${await freePort()}`, '--timeout', '2s'])
    expect(await down.waitForExit()).toEqual({ code: 1, signal: null })
    expect(down.stderrLines.filter((line) => line !== '')).toEqual([expect.stringMatching(/^error: cannot read 127\.0\.0\.1:\d+\/v1\/spokes: /)])
  }, 180_000)
})
