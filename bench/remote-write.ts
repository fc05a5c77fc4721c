/**
 * `pnpm bench:remote-write`: how fast a spoke Prometheus (agent mode) catches up on a remote-write backlog, written
 * directly to the hub's receiver vs through spokelink (agent --hub-service → exit-node → receiver), on loopback.
 *
 * Each round: the hub's receiver is down while the spoke scrapes `--series` series every second for `--backlog-s`
 * seconds (its WAL queue holds them); then the hub starts and the bench measures the hub's appended samples per
 * second until it holds every sample the spoke produced, and the CPU seconds the spokelink processes spent.
 * Prints one markdown table on stdout; progress goes to stderr. Not a test: nothing is asserted.
 *
 * Options (flag or env): `--rounds N` (BENCH_ROUNDS, 2), `--series N` (BENCH_SERIES, 20000), `--backlog-s N`
 * (BENCH_BACKLOG_S, 30).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as delay } from 'node:timers/promises'
import {
  freePort, killAllProcesses, prometheusConfig, runSpokelink, startFixtureExporter, startPrometheus, waitFor,
} from '@spokelink/testkit'
import type { RunningPrometheus, RunningProcess } from '@spokelink/testkit'
import { cpuSpent, readTreeCpu } from './lib/proc-cpu.js'

interface Options { rounds: number, series: number, backlogS: number }

function log (message: string): void {
  process.stderr.write(`[bench:remote-write] ${message}\n`)
}

function readOptions (): Options {
  const { values } = parseArgs({ options: { rounds: { type: 'string' }, series: { type: 'string' }, 'backlog-s': { type: 'string' } } })
  const num = (flag: string | undefined, env: string | undefined, fallback: number): number => {
    const n = Number(flag ?? env ?? fallback)
    if (!Number.isInteger(n) || n <= 0) throw new Error(`expected a positive integer, got ${String(flag ?? env)}`)
    return n
  }
  return {
    rounds: num(values.rounds, process.env.BENCH_ROUNDS, 2),
    series: num(values.series, process.env.BENCH_SERIES, 20_000),
    backlogS: num(values['backlog-s'], process.env.BENCH_BACKLOG_S, 30),
  }
}

/** Sum of every sample of `name` in a Prometheus text exposition (all label sets). */
function metricSum (text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

async function scrape (url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return res.text()
}

interface RoundResult { samples: number, seconds: number, samplesPerSecond: number, spokelinkCpuSeconds: number }

async function round (path: 'direct' | 'tunnel', options: Options, dir: string): Promise<RoundResult> {
  const series = Array.from({ length: options.series }, (_, i) => `bench_series{i="${i}"} ${i}`).join('\n')
  const exporter = await startFixtureExporter({ metrics: `# TYPE bench_series gauge\n${series}\n` })
  const hubPort = await freePort()
  const children: RunningProcess[] = []
  let writeUrl = `http://127.0.0.1:${hubPort}/api/v1/write`
  if (path === 'tunnel') {
    const spokesFile = join(dir, `spokes-${Date.now()}.yaml`)
    writeFileSync(spokesFile, `spokes:\n  - name: bench\n    tokens: []\n    hubServices: [{name: remote-write, address: "127.0.0.1:${hubPort}"}]\n`)
    const create = runSpokelink(['token', 'create', '--spokes', spokesFile, '--spoke', 'bench', '--output', 'json'], { name: 'token create' })
    await create.waitForExit()
    const token = String((JSON.parse(create.stdoutLines.find((line) => line !== '') ?? '{}') as { token: unknown }).token)
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile], { name: 'server' })
    children.push(server)
    const listening = await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'server listening', timeoutMs: 30_000 })
    const listenPort = await freePort()
    const agent = runSpokelink(['agent', '--server', `ws://127.0.0.1:${String(listening.port)}/connect`, '--upstream', 'unused=127.0.0.1:9',
      '--hub-service', `remote-write=127.0.0.1:${listenPort}`], { name: 'agent', env: { SPOKELINK_TOKEN: token } })
    children.push(agent)
    await agent.waitForLog((e) => e.msg === 'connected', { what: 'agent connected', timeoutMs: 30_000 })
    writeUrl = `http://127.0.0.1:${listenPort}/api/v1/write`
  }
  const spoke = await startPrometheus({
    name: `spoke-${path}`,
    agent: true,
    config: prometheusConfig({ scrapeIntervalMs: 1000, globalLabels: { cluster: 'bench' }, jobs: [{ name: 'bench', targets: [exporter.target] }], remoteWrite: [{ url: writeUrl, maxShards: 50 }] }),
  })
  log(`${path}: receiver down for ${options.backlogS} s while the spoke scrapes ${options.series} series/s`)
  await delay(options.backlogS * 1000)
  const hub: RunningPrometheus = await startPrometheus({ name: `hub-${path}`, config: prometheusConfig({ jobs: [] }), port: hubPort, extraArgs: ['--web.enable-remote-write-receiver'] })
  const cpuBefore = await readTreeCpu(children.map((child) => child.child.pid ?? 0))
  const started = performance.now()
  // Caught up: the hub holds at least every sample of the scrapes made before the receiver came back.
  const backlog = exporter.requests * options.series
  const appended = await waitFor(async () => {
    const n = metricSum(await scrape(`${hub.url}/metrics`), 'prometheus_tsdb_head_samples_appended_total')
    return n >= backlog ? n : undefined
  }, { what: `the hub to append ${backlog} samples`, timeoutMs: 600_000, intervalMs: 100 })
  const seconds = (performance.now() - started) / 1000
  const cpuAfter = await readTreeCpu(children.map((child) => child.child.pid ?? 0))
  await Promise.all([spoke.close(), hub.close(), exporter.close()])
  for (const child of children) await child.kill()
  return { samples: appended, seconds, samplesPerSecond: appended / seconds, spokelinkCpuSeconds: cpuSpent(cpuBefore, cpuAfter) }
}

async function main (): Promise<void> {
  const options = readOptions()
  const dir = mkdtempSync(join(tmpdir(), 'spokelink-bench-rw-'))
  const results: Record<'direct' | 'tunnel', RoundResult[]> = { direct: [], tunnel: [] }
  try {
    for (let i = 0; i < options.rounds; i++) {
      for (const path of ['direct', 'tunnel'] as const) {
        const result = await round(path, options, dir)
        log(`${path} round ${i + 1}: ${Math.round(result.samplesPerSecond)} samples/s (${result.samples} in ${result.seconds.toFixed(1)} s)`)
        results[path].push(result)
      }
    }
  } finally {
    await killAllProcesses()
    rmSync(dir, { recursive: true, force: true })
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
  const direct = median(results.direct.map((r) => r.samplesPerSecond))
  const tunnel = median(results.tunnel.map((r) => r.samplesPerSecond))
  const cpu = median(results.tunnel.map((r) => r.spokelinkCpuSeconds / (r.samples / 1e6)))
  process.stdout.write(`node ${process.version}, ${cpus().length} CPUs, Prometheus 2.x agent mode → receiver, ${options.series} series/s, ${options.backlogS} s backlog, median of ${options.rounds} rounds\n\n`)
  process.stdout.write('| path | catch-up samples/s | vs direct | spokelink CPU s per million samples |\n|---|---|---|---|\n')
  process.stdout.write(`| direct | ${Math.round(direct)} | 1.00× | — |\n`)
  process.stdout.write(`| through the tunnel (ws) | ${Math.round(tunnel)} | ${(tunnel / direct).toFixed(2)}× | ${cpu.toFixed(2)} |\n`)
}

await main()
