/**
 * `pnpm bench:fleet`: one exit-node (`spokelink server` from the built CLI, a child process) carrying a fleet of
 * spokes, each a real agent session (`@spokelink/agent`, several agents per child process) whose `/federate`
 * answers `--response-bytes` from an upstream in the agents' process. Every spoke is scraped every `--interval`
 * through its data-plane port, staggered like Prometheus staggers targets, and the same upstream directly half an
 * interval later. Measures, for each `--spokes` count: the exit-node's CPU and RSS above its idle baseline, scrape
 * duration p50/p99 through the tunnel and direct, and after a SIGTERM and restart on the same ports, how long until
 * every agent is back and the most upgrade attempts in any one second. Prints one markdown table on stdout.
 *
 *   tsx bench/fleet.ts [--spokes 100,1000] [--duration 60s] [--interval 15s] [--response-bytes 1000000]
 *                      [--agent-processes 4] [--ws] [--restart-backoff-max 5s] [--restart-backoff-window 60s]
 *                      [--heap-snapshots] [--restart-signal SIGTERM|SIGKILL] [--exit-node-cpu-prof DIR]
 *                      [--max-unauthenticated N]
 *
 * Not a test: nothing here asserts; the targets column says how a figure compares with issue 12's.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { createSpokeToken } from '@spokelink/auth'
import { killAllProcesses, parseMetricsText, readRssKiB, runProcess, spokelinkBin, waitFor, writeTlsFixtureFiles } from '@spokelink/testkit'
import type { RunningProcess, TlsFixtureFiles } from '@spokelink/testkit'
import { BACKOFF_DEFAULTS } from '@spokelink/agent'
import type { BackoffOptions } from '@spokelink/agent'
import { startFleetAgents } from './lib/fleet-agents-group.js'
import { takeLiveHeap } from './lib/heap-snapshot.js'
import type { LiveHeap } from './lib/heap-snapshot.js'
import type { AgentsTick } from './lib/fleet-agents-group.js'
import { FleetScraper } from './lib/fleet-scraper.js'
import type { ScrapeTarget } from './lib/fleet-scraper.js'
import { pickFreePorts } from './lib/ports.js'
import { readCpuSeconds, readTotalCpuSeconds } from './lib/proc-cpu.js'

const STARTUP_TIMEOUT_MS = 30_000
const AGENT_CONNECT_CONCURRENCY = 32
const AGENT_TICK_MS = 250
const RSS_SAMPLE_MS = 1000
/** After a restart, give up waiting for the fleet after this long (the target is 30 s). */
const RESTART_TIMEOUT_MS = 180_000

interface FleetOptions {
  spokes: number[]
  durationMs: number
  intervalMs: number
  responseBytes: number
  agentProcesses: number
  tls: boolean
  /** The exit-node's `--log-level`; at `debug` the bench prints why streams were aborted. */
  exitNodeLogLevel: string
  /** Extra environment of the exit-node only (`--exit-node-env MALLOC_ARENA_MAX=2,…`), for allocator experiments. */
  exitNodeEnv: Record<string, string>
  /** The agents' `backoff` option (`--restart-backoff-max 1s --restart-backoff-window 1ms`: the behaviour before it existed). */
  agentBackoff: BackoffOptions
  /** Heap snapshots of the exit-node at rest, with idle sessions and after scraping: its live memory per spoke. */
  heapSnapshots: boolean
  /** How the exit-node is stopped for the restart: SIGTERM (graceful, agents see 1001) or SIGKILL (a crash). */
  restartSignal: 'SIGTERM' | 'SIGKILL'
  /** Write a V8 CPU profile of each exit-node process into this directory (`node --cpu-prof`; not allowed in NODE_OPTIONS). */
  exitNodeCpuProfDir: string | undefined
  /** The exit-node's `--max-unauthenticated` (and per source); default max(2048, 2 × spokes). */
  maxUnauthenticated: number | undefined
}

/** What one fleet size measured. */
interface FleetResult {
  spokes: number
  load: string
  firstConnectS: number
  baselineRssMiB: number
  cpuCores: number
  /** The load generator's share: the agents' processes together, and this process (the scraper). */
  agentsCpuCores: number
  benchCpuCores: number
  /** Longest event-loop delay in the measured window: the exit-node's, the worst agents process's. */
  exitNodeLoopDelayMaxMs: number
  agentsLoopDelayMaxMs: number
  /** Exit-node CPU seconds per GiB received by the scraper through the tunnel in the same window. */
  cpuSecondsPerGiB: number
  tunnelMiBps: number
  rssPerSpokeKiB: number
  /** The end-of-window split of RSS above rest, per spoke: V8 heap used, `external` (Buffers), the rest (OpenSSL, malloc). */
  heapPerSpokeKiB: number
  heapFreePerSpokeKiB: number
  externalPerSpokeKiB: number
  nativePerSpokeKiB: number
  /** `spokelink_streams_total` by result over the whole run until the restart. */
  streamResults: string
  rssMaxPerSpokeKiB: number
  tunnelP50: number
  tunnelP99: number
  directP50: number
  directP99: number
  scrapes: number
  failures: string
  exitS: number
  backAfterSigtermS: number
  backAfterListenS: number
  maxAttemptsPerSecond: number
  /** Per second since the SIGTERM: what the agents and the new exit-node saw. */
  restartSeconds: RestartSecond[]
  /** The old exit-node's own log: SIGTERM until 'shutting down', until 'shut down' (s). */
  shutdownStartS: number
  shutdownDoneS: number
  /** SIGTERM until the new exit-node logged 'listening' on the control port (s). */
  listeningS: number
  /** The new exit-node's refusals while the fleet came back (`spokelink_control_refused_total`, auth failures), by reason. */
  restartRefusals: string
  /** From heap snapshots (`--heap-snapshots`; NaN without): live heap + Buffers per spoke above rest, idle and after scraping. */
  liveIdlePerSpokeKiB: number
  liveScrapedPerSpokeKiB: number
  liveBuffersScrapedPerSpokeKiB: number
  /** CPU seconds from the new exit-node listening until every agent was back: the exit-node's, the agents' processes'. */
  restartExitNodeCpuS: number
  restartAgentsCpuS: number
}

/** One second after the SIGTERM. */
interface RestartSecond {
  /** Sessions the agents lost, first attempts after a lost session, all upgrade attempts, sessions established (agents). */
  lost: number
  first: number
  attempts: number
  back: number
  /** 'session opened' lines of the new exit-node in this second. */
  opened: number
}

/** This process's CPU (the scraper runs here). */
function cpuTimeSeconds (): number {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1e6
}

function log (message: string): void {
  process.stderr.write(`[fleet] ${new Date().toISOString().slice(11, 19)} ${message}\n`)
}

/** `60s`, `1.5m`, `500ms` or a bare number of milliseconds. */
function parseDurationMs (name: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (match?.[1] === undefined) throw new Error(`--${name}: expected a duration like 60s, got "${text}"`)
  const unit = match[2] ?? 'ms'
  return Number(match[1]) * (unit === 'm' ? 60_000 : unit === 's' ? 1000 : 1)
}

function positiveInt (name: string, text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name}: expected a positive integer, got "${text}"`)
  return value
}

function parseOptions (): FleetOptions {
  const { values } = parseArgs({
    options: {
      spokes: { type: 'string', default: '100,1000' },
      duration: { type: 'string', default: '60s' },
      interval: { type: 'string', default: '15s' },
      'response-bytes': { type: 'string', default: '1000000' },
      'agent-processes': { type: 'string', default: '4' },
      ws: { type: 'boolean', default: false },
      'exit-node-log-level': { type: 'string', default: 'info' },
      'exit-node-env': { type: 'string', default: '' },
      'restart-backoff-max': { type: 'string' },
      'restart-backoff-window': { type: 'string' },
      'heap-snapshots': { type: 'boolean', default: false },
      'restart-signal': { type: 'string', default: 'SIGTERM' },
      'exit-node-cpu-prof': { type: 'string' },
      'max-unauthenticated': { type: 'string' },
    },
  })
  const restartSignal = values['restart-signal']
  if (restartSignal !== 'SIGTERM' && restartSignal !== 'SIGKILL') throw new Error(`--restart-signal: expected SIGTERM or SIGKILL, got "${restartSignal}"`)
  return {
    spokes: values.spokes.split(',').map((s) => positiveInt('spokes', s.trim())),
    durationMs: parseDurationMs('duration', values.duration),
    intervalMs: parseDurationMs('interval', values.interval),
    responseBytes: positiveInt('response-bytes', values['response-bytes']),
    agentProcesses: positiveInt('agent-processes', values['agent-processes']),
    tls: !values.ws,
    exitNodeLogLevel: values['exit-node-log-level'],
    heapSnapshots: values['heap-snapshots'],
    restartSignal,
    exitNodeCpuProfDir: values['exit-node-cpu-prof'],
    maxUnauthenticated: values['max-unauthenticated'] === undefined ? undefined : positiveInt('max-unauthenticated', values['max-unauthenticated']),
    agentBackoff: {
      ...(values['restart-backoff-max'] === undefined ? {} : { plannedMaxDelayMs: Math.max(1, parseDurationMs('restart-backoff-max', values['restart-backoff-max'])) }),
      ...(values['restart-backoff-window'] === undefined ? {} : { plannedWindowMs: Math.max(1, parseDurationMs('restart-backoff-window', values['restart-backoff-window'])) }),
    },
    exitNodeEnv: Object.fromEntries(values['exit-node-env'].split(',').filter((kv) => kv !== '').map((kv) => {
      const eq = kv.indexOf('=')
      if (eq <= 0) throw new Error(`--exit-node-env: expected NAME=VALUE[,NAME=VALUE…], got "${kv}"`)
      return [kv.slice(0, eq), kv.slice(eq + 1)]
    })),
  }
}

function formatLoad (): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ')
}

/** The spokes file: one spoke per token, each with one data-plane port for its `prometheus` upstream. */
async function writeFleetSpokes (file: string, dataPorts: readonly number[]): Promise<string[]> {
  const tokens: string[] = []
  const spokes = dataPorts.map((port, i) => {
    const { token, id, sha256 } = createSpokeToken()
    tokens.push(token)
    return { name: spokeName(i), tokens: [{ id, sha256 }], ports: [{ upstream: 'prometheus', listen: `127.0.0.1:${port}` }] }
  })
  await writeFile(file, JSON.stringify({ spokes }), { mode: 0o600 })
  return tokens
}

function spokeName (i: number): string {
  return `spoke-${String(i).padStart(4, '0')}`
}

/**
 * `spokelink server` on a fixed control port (a restart comes back on the same one), admin on port 0, with the
 * unauthenticated caps raised: every agent dials from 127.0.0.1, so the per-source cap would otherwise throttle
 * the fleet's reconnect as if it were one abusive client.
 */
async function startExitNode (controlPort: number, spokesFile: string, spokes: number, tls: TlsFixtureFiles | undefined, options: FleetOptions): Promise<ExitNodeProcess> {
  const cap = String(options.maxUnauthenticated ?? Math.max(2048, 2 * spokes))
  const child = runProcess(process.execPath, [
    ...(options.exitNodeCpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.exitNodeCpuProfDir}`]),
    spokelinkBin(), 'server', '--listen', `127.0.0.1:${controlPort}`, '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, '--log-level', options.exitNodeLogLevel,
    '--max-unauthenticated', cap, '--max-unauthenticated-per-source', cap,
    ...(tls === undefined ? [] : ['--tls-cert', tls.certFile, '--tls-key', tls.keyFile]),
  ], { name: 'exit-node', env: exitNodeEnv(options, spokesFile) })
  await child.waitForLog((entry) => entry.msg === 'listening' && entry.listener === 'control', { what: 'the exit-node to listen', timeoutMs: STARTUP_TIMEOUT_MS })
  const admin = await child.waitForLog((entry) => entry.msg === 'listening' && entry.listener === 'admin', { what: 'the admin listener', timeoutMs: STARTUP_TIMEOUT_MS })
  return Object.assign(child, { adminPort: Number(admin.port) })
}

type ExitNodeProcess = RunningProcess & { adminPort: number }

/** `--exit-node-env`, plus with `--heap-snapshots` the flags that let SIGUSR2 write a snapshot next to the spokes file. */
function exitNodeEnv (options: FleetOptions, spokesFile: string): Record<string, string> {
  if (!options.heapSnapshots) return options.exitNodeEnv
  const heapDir = join(dirname(spokesFile), 'heap')
  mkdirSync(heapDir, { recursive: true })
  const nodeOptions = [options.exitNodeEnv.NODE_OPTIONS, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${heapDir}`].filter((o) => o !== undefined).join(' ')
  return { ...options.exitNodeEnv, NODE_OPTIONS: nodeOptions }
}

/** What the exit-node's own `/metrics` says about its memory (prom-client's default metrics) and its streams. */
interface ExitNodeReading {
  /** The longest event-loop delay since the previous read of `/metrics` (prom-client resets it at each). */
  loopDelayMaxMs: number
  heapUsedKiB: number
  heapTotalKiB: number
  externalKiB: number
  rssKiB: number
  /** `spokelink_streams_total` summed by `result`. */
  streamResults: Map<string, number>
  /** `spokelink_control_refused_total` and `spokelink_auth_failures_total` by reason. */
  refusals: Map<string, number>
}

async function readExitNode (exitNode: ExitNodeProcess): Promise<ExitNodeReading> {
  const response = await fetch(`http://127.0.0.1:${exitNode.adminPort}/metrics`)
  const samples = parseMetricsText(await response.text())
  const value = (name: string): number => samples.find((s) => s.name === name)?.value ?? NaN
  const streamResults = new Map<string, number>()
  for (const s of samples) {
    if (s.name !== 'spokelink_streams_total') continue
    const result = s.labels.result ?? '?'
    streamResults.set(result, (streamResults.get(result) ?? 0) + s.value)
  }
  const refusals = new Map<string, number>()
  for (const s of samples) {
    if ((s.name !== 'spokelink_control_refused_total' && s.name !== 'spokelink_auth_failures_total') || s.value === 0) continue
    const reason = `${s.name === 'spokelink_auth_failures_total' ? 'auth ' : ''}${s.labels.reason ?? '?'}`
    refusals.set(reason, (refusals.get(reason) ?? 0) + s.value)
  }
  return {
    loopDelayMaxMs: value('spokelink_process_nodejs_eventloop_lag_max_seconds') * 1000,
    heapUsedKiB: value('spokelink_process_nodejs_heap_size_used_bytes') / 1024,
    heapTotalKiB: value('spokelink_process_nodejs_heap_size_total_bytes') / 1024,
    externalKiB: value('spokelink_process_nodejs_external_memory_bytes') / 1024,
    rssKiB: value('spokelink_process_process_resident_memory_bytes') / 1024,
    streamResults,
    refusals,
  }
}

/** RSS once two readings 500 ms apart differ by less than 1 % (or after 5 s). */
async function settledRssKiB (pid: number): Promise<number> {
  let previous = await readRssKiB(pid)
  for (let i = 0; i < 10; i++) {
    await delay(500)
    const current = await readRssKiB(pid)
    if (Math.abs(current - previous) < previous * 0.01) return current
    previous = current
  }
  return previous
}

async function runFleet (spokes: number, options: FleetOptions, baseDir: string, tls: TlsFixtureFiles | undefined): Promise<FleetResult> {
  const load = formatLoad()
  const dir = join(baseDir, `fleet-${spokes}`)
  mkdirSync(dir, { recursive: true })
  const [controlPort, ...dataPorts] = await pickFreePorts(spokes + 1)
  if (controlPort === undefined) throw new Error('no control port')
  const spokesFile = join(dir, 'spokes.json')
  const tokens = await writeFleetSpokes(spokesFile, dataPorts)
  let exitNode = await startExitNode(controlPort, spokesFile, spokes, tls, options)
  const baselineRssKiB = await settledRssKiB(exitNode.pid)
  const atRest = await readExitNode(exitNode)
  const heapDir = join(dir, 'heap')
  const liveHeap = async (): Promise<LiveHeap | undefined> => options.heapSnapshots ? takeLiveHeap(exitNode.pid, heapDir, async () => readExitNode(exitNode)) : undefined
  const liveAtRest = await liveHeap()
  log(`${spokes} spokes: exit-node up (pid ${exitNode.pid}), RSS ${(baselineRssKiB / 1024).toFixed(1)} MiB; starting agents`)
  const connectStarted = performance.now()
  const agents = await startFleetAgents(dir, {
    server: `${tls === undefined ? 'ws' : 'wss'}://127.0.0.1:${controlPort}/connect`,
    ...(tls === undefined ? {} : { caFile: tls.caFile }),
    responseBytes: options.responseBytes,
    concurrency: AGENT_CONNECT_CONCURRENCY,
    connectTimeoutMs: STARTUP_TIMEOUT_MS,
    tickMs: AGENT_TICK_MS,
    backoff: options.agentBackoff,
  }, tokens, options.agentProcesses)
  const firstConnectS = (performance.now() - connectStarted) / 1000
  log(`${spokes} spokes: all connected in ${firstConnectS.toFixed(1)} s; scraping (one interval of warm-up, then ${options.durationMs / 1000} s measured)`)
  const liveIdle = await liveHeap()
  try {
    const targets: ScrapeTarget[] = dataPorts.map((port, i) => ({ name: spokeName(i), tunnelPort: port, directPort: agents.processOf(i).upstreamPort }))
    const scraper = new FleetScraper(targets, options.intervalMs, options.responseBytes)
    await delay(options.intervalMs)
    scraper.recording = true
    // Reading /metrics resets prom-client's event-loop delay histogram: the end-of-window figure covers the window only.
    await readExitNode(exitNode)
    const cpuBefore = await readCpuSeconds(exitNode.pid)
    const agentPids = agents.groups.flatMap((g) => g.child.pid === undefined ? [] : [g.child.pid])
    const agentsCpuBefore = await readTotalCpuSeconds(agentPids)
    const benchCpuBefore = cpuTimeSeconds()
    for (const group of agents.groups) group.loopDelayMaxMs = 0
    const started = performance.now()
    let rssMax = 0
    let rssLast = 0
    while (performance.now() - started < options.durationMs) {
      await delay(Math.min(RSS_SAMPLE_MS, Math.max(0, options.durationMs - (performance.now() - started))))
      rssLast = await readRssKiB(exitNode.pid)
      rssMax = Math.max(rssMax, rssLast)
    }
    const cpuSeconds = await readCpuSeconds(exitNode.pid) - cpuBefore
    const windowS = (performance.now() - started) / 1000
    const cpuCores = cpuSeconds / windowS
    const agentsCpuCores = (await readTotalCpuSeconds(agentPids) - agentsCpuBefore) / windowS
    const benchCpuCores = (cpuTimeSeconds() - benchCpuBefore) / windowS
    scraper.recording = false
    const loaded = await readExitNode(exitNode)
    const agentsLoopDelayMaxMs = Math.max(...agents.groups.map((g) => g.loopDelayMaxMs))
    await scraper.stop()
    const streamResults = (await readExitNode(exitNode)).streamResults
    const liveScraped = await liveHeap()
    if (options.exitNodeLogLevel === 'debug' || options.exitNodeLogLevel === 'trace') logStreamFailures(exitNode)
    log(`${spokes} spokes: ${scraper.tunnel.durations.count} scrapes through the tunnel, ${scraper.direct.durations.count} direct; CPU ${cpuCores.toFixed(2)} cores; restarting the exit-node`)

    // The restart: SIGTERM, the same command again, until every agent is back.
    const sigtermAt = Date.now()
    const perSecond: RestartSecond[] = []
    const secondAt = (t: number): RestartSecond | undefined => {
      const second = Math.floor((t - sigtermAt) / 1000)
      if (second < 0 || second > RESTART_TIMEOUT_MS / 1000) return undefined
      for (let i = perSecond.length; i <= second; i++) perSecond.push({ lost: 0, first: 0, attempts: 0, back: 0, opened: 0 })
      return perSecond[second]
    }
    let listeningAt = Number.POSITIVE_INFINITY
    let backAt: number | undefined
    for (const group of agents.groups) {
      group.onTick = (tick: AgentsTick) => {
        const bucket = secondAt(tick.t)
        if (bucket !== undefined) {
          bucket.attempts += tick.attempts
          bucket.lost += tick.lost
          bucket.first += tick.first
          bucket.back += tick.back
        }
        if (backAt === undefined && tick.t >= listeningAt && agents.groups.reduce((sum, g) => sum + g.connected, 0) === spokes) backAt = tick.t
      }
    }
    const oldExitNode = exitNode
    await exitNode.kill(options.restartSignal, { timeoutMs: 60_000 })
    const exitedAt = Date.now()
    exitNode = await startExitNode(controlPort, spokesFile, spokes, tls, options)
    listeningAt = Date.now()
    const restartCpuBefore = await readCpuSeconds(exitNode.pid)
    const restartAgentsCpuBefore = await readTotalCpuSeconds(agentPids)
    await waitFor(() => backAt !== undefined, { what: `all ${spokes} agents back after the restart`, timeoutMs: RESTART_TIMEOUT_MS, intervalMs: 100 })
    const restartExitNodeCpuS = await readCpuSeconds(exitNode.pid) - restartCpuBefore
    const restartAgentsCpuS = await readTotalCpuSeconds(agentPids) - restartAgentsCpuBefore
    const back = backAt ?? NaN
    for (const group of agents.groups) group.onTick = undefined
    const logTime = (child: RunningProcess, msg: string): number => {
      const entry = child.logs.find((e) => e.msg === msg && typeof e.time === 'number' && e.time >= sigtermAt)
      return typeof entry?.time === 'number' ? entry.time : NaN
    }
    for (const entry of exitNode.logs) {
      if (entry.msg !== 'session opened' || typeof entry.time !== 'number') continue
      const bucket = secondAt(entry.time)
      if (bucket !== undefined) bucket.opened++
    }
    const afterRestart = await readExitNode(exitNode)
    const maxAttemptsPerSecond = Math.max(0, ...perSecond.map((s) => s.attempts))
    log(`${spokes} spokes: back ${((back - sigtermAt) / 1000).toFixed(1)} s after SIGTERM; attempts per second: ${perSecond.map((s, i) => `${i}:${s.attempts}`).join(' ')}`)

    const failures = [scraper.tunnel, scraper.direct].map((s) => `${s.failures}${s.failures === 0 ? '' : ` (${[...s.failureKinds.entries()].map(([kind, n]) => `${n} ${kind}`).join('; ')})`}`).join(' / ')
    return {
      spokes,
      load: `${load} → ${formatLoad()}`,
      firstConnectS,
      baselineRssMiB: baselineRssKiB / 1024,
      cpuCores,
      agentsCpuCores,
      benchCpuCores,
      exitNodeLoopDelayMaxMs: loaded.loopDelayMaxMs,
      agentsLoopDelayMaxMs,
      cpuSecondsPerGiB: cpuSeconds / (scraper.tunnel.bytes / 2 ** 30),
      tunnelMiBps: scraper.tunnel.bytes / 2 ** 20 / windowS,
      rssPerSpokeKiB: (rssLast - baselineRssKiB) / spokes,
      heapPerSpokeKiB: (loaded.heapUsedKiB - atRest.heapUsedKiB) / spokes,
      heapFreePerSpokeKiB: ((loaded.heapTotalKiB - loaded.heapUsedKiB) - (atRest.heapTotalKiB - atRest.heapUsedKiB)) / spokes,
      externalPerSpokeKiB: (loaded.externalKiB - atRest.externalKiB) / spokes,
      nativePerSpokeKiB: ((loaded.rssKiB - loaded.heapTotalKiB - loaded.externalKiB) - (atRest.rssKiB - atRest.heapTotalKiB - atRest.externalKiB)) / spokes,
      streamResults: [...streamResults.entries()].sort((a, b) => b[1] - a[1]).map(([result, n]) => `${result} ${n}`).join(', '),
      rssMaxPerSpokeKiB: (rssMax - baselineRssKiB) / spokes,
      tunnelP50: scraper.tunnel.durations.percentile(50),
      tunnelP99: scraper.tunnel.durations.percentile(99),
      directP50: scraper.direct.durations.percentile(50),
      directP99: scraper.direct.durations.percentile(99),
      scrapes: scraper.tunnel.durations.count,
      failures,
      exitS: (exitedAt - sigtermAt) / 1000,
      backAfterSigtermS: (back - sigtermAt) / 1000,
      backAfterListenS: (back - listeningAt) / 1000,
      maxAttemptsPerSecond,
      restartSeconds: perSecond,
      shutdownStartS: (logTime(oldExitNode, 'shutting down') - sigtermAt) / 1000,
      shutdownDoneS: (logTime(oldExitNode, 'shut down') - sigtermAt) / 1000,
      listeningS: (logTime(exitNode, 'listening') - sigtermAt) / 1000,
      liveIdlePerSpokeKiB: liveIdle === undefined || liveAtRest === undefined ? NaN : (liveIdle.totalBytes - liveAtRest.totalBytes) / 1024 / spokes,
      liveScrapedPerSpokeKiB: liveScraped === undefined || liveAtRest === undefined ? NaN : (liveScraped.totalBytes - liveAtRest.totalBytes) / 1024 / spokes,
      liveBuffersScrapedPerSpokeKiB: liveScraped === undefined || liveAtRest === undefined ? NaN : (liveScraped.arrayBufferBytes - liveAtRest.arrayBufferBytes) / 1024 / spokes,
      restartExitNodeCpuS,
      restartAgentsCpuS,
      restartRefusals: [...afterRestart.refusals.entries()].map(([reason, n]) => `${reason} ${n}`).join(', ') || 'none',
    }
  } finally {
    await Promise.all(agents.groups.map(async (group) => { await group.close() }))
    await exitNode.kill()
  }
}

/** At debug level the exit-node logs why each stream failed: the counts by error code and message, on stderr. */
function logStreamFailures (exitNode: ExitNodeProcess): void {
  const reasons = new Map<string, number>()
  for (const entry of exitNode.logs) {
    if (typeof entry.msg !== 'string' || !/^stream (aborted|refused|closed idle)$/.test(entry.msg)) continue
    const err = entry.err as { code?: string, message?: string } | undefined
    const reason = `${entry.msg}: ${err?.code ?? '?'} ${err?.message?.replace(/\d+/g, 'n') ?? ''}`
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
  }
  for (const [reason, n] of reasons) log(`  ${n} × ${reason}`)
}

interface Row {
  label: string
  value: (r: FleetResult) => number | string
  digits?: number
  target?: (r: FleetResult) => string
}

const ROWS: Row[] = [
  { label: 'exit-node CPU while scraping (cores)', value: (r) => r.cpuCores, digits: 2, target: (r) => `≤ 0.3 ${r.cpuCores <= 0.3 ? '✅' : '❌'}` },
  { label: 'load generator CPU: agents processes together / the scraper (cores)', value: (r) => `${r.agentsCpuCores.toFixed(2)} / ${r.benchCpuCores.toFixed(2)}` },
  { label: 'longest event-loop delay: exit-node / worst agents process (ms)', value: (r) => `${r.exitNodeLoopDelayMaxMs.toFixed(0)} / ${r.agentsLoopDelayMaxMs.toFixed(0)}` },
  { label: 'exit-node CPU per GiB scraped through the tunnel (s)', value: (r) => r.cpuSecondsPerGiB, digits: 2 },
  { label: 'through the tunnel while measuring (MiB/s)', value: (r) => r.tunnelMiBps, digits: 1 },
  { label: 'exit-node RSS at rest, no sessions (MiB)', value: (r) => r.baselineRssMiB, digits: 1 },
  { label: 'exit-node RSS above rest per spoke, end of window (KiB)', value: (r) => r.rssPerSpokeKiB, digits: 1, target: (r) => `≤ 64 ${r.rssPerSpokeKiB <= 64 ? '✅' : '❌'}` },
  { label: 'same, highest sample in the window (KiB)', value: (r) => r.rssMaxPerSpokeKiB, digits: 1, target: (r) => `≤ 64 ${r.rssMaxPerSpokeKiB <= 64 ? '✅' : '❌'}` },
  { label: 'of which V8 heap used, per spoke (KiB)', value: (r) => r.heapPerSpokeKiB, digits: 1 },
  { label: 'of which V8 heap allocated but free, per spoke (KiB)', value: (r) => r.heapFreePerSpokeKiB, digits: 1 },
  { label: 'of which external (Buffers), per spoke (KiB)', value: (r) => r.externalPerSpokeKiB, digits: 1 },
  { label: 'of which the rest (OpenSSL, malloc arenas, code), per spoke (KiB)', value: (r) => r.nativePerSpokeKiB, digits: 1 },
  { label: 'live heap + Buffers per spoke after a full GC (heap snapshot, --heap-snapshots): idle sessions (KiB)', value: (r) => r.liveIdlePerSpokeKiB, digits: 1 },
  { label: 'same after scraping, scrapes finished (KiB); of which Buffers', value: (r) => Number.isNaN(r.liveScrapedPerSpokeKiB) ? '—' : `${r.liveScrapedPerSpokeKiB.toFixed(1)}; ${r.liveBuffersScrapedPerSpokeKiB.toFixed(1)}` },
  { label: 'scrape p50 through the tunnel (ms)', value: (r) => r.tunnelP50, digits: 1 },
  { label: 'scrape p50 direct (ms)', value: (r) => r.directP50, digits: 1 },
  { label: 'scrape p50 tunnel ÷ direct', value: (r) => r.tunnelP50 / r.directP50, digits: 2 },
  { label: 'scrape p99 through the tunnel (ms)', value: (r) => r.tunnelP99, digits: 1 },
  { label: 'scrape p99 direct (ms)', value: (r) => r.directP99, digits: 1 },
  { label: 'scrape p99 tunnel ÷ direct', value: (r) => r.tunnelP99 / r.directP99, digits: 2 },
  { label: 'scrapes measured through the tunnel', value: (r) => r.scrapes, digits: 0 },
  { label: 'failed scrapes (tunnel / direct)', value: (r) => r.failures },
  { label: 'exit-node streams by result (warm-up included)', value: (r) => r.streamResults },
  { label: 'agents processes started until every agent connected (s)', value: (r) => r.firstConnectS, digits: 1 },
  { label: 'restart: SIGTERM until the old exit-node logged shutting down / shut down (s)', value: (r) => `${r.shutdownStartS.toFixed(1)} / ${r.shutdownDoneS.toFixed(1)}` },
  { label: 'restart: SIGTERM until the old exit-node exited (s)', value: (r) => r.exitS, digits: 1 },
  { label: 'restart: SIGTERM until the new exit-node listened (s)', value: (r) => r.listeningS, digits: 1 },
  { label: 'restart: SIGTERM until every agent is back (s)', value: (r) => r.backAfterSigtermS, digits: 1, target: (r) => `≤ 30 ${r.backAfterSigtermS <= 30 ? '✅' : '❌'}` },
  { label: 'restart: new exit-node listening until every agent is back (s)', value: (r) => r.backAfterListenS, digits: 1 },
  { label: 'restart: most upgrade attempts in one second', value: (r) => r.maxAttemptsPerSecond, digits: 0, target: (r) => `≤ 1,000 ${r.maxAttemptsPerSecond <= 1000 ? '✅' : '❌'}` },
  { label: 'restart: CPU from the new exit-node listening until every agent is back: exit-node / agents processes (s)', value: (r) => `${r.restartExitNodeCpuS.toFixed(2)} / ${r.restartAgentsCpuS.toFixed(2)}` },
  { label: 'restart: upgrade attempts in all', value: (r) => r.restartSeconds.reduce((sum, s) => sum + s.attempts, 0), digits: 0 },
  { label: 'restart: the new exit-node\'s refusals (reason count)', value: (r) => r.restartRefusals },
  { label: 'load average (1/5/15 min), start → end', value: (r) => r.load },
]

function formatCell (value: number | string, digits: number): string {
  if (typeof value === 'string') return value
  if (!Number.isFinite(value)) return '—'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** One row per figure, one column per fleet size, the growth from the first size to the last, the targets at the largest. */
function renderFleetTable (results: readonly FleetResult[]): string {
  const first = results[0]
  const last = results[results.length - 1]
  const header = ['figure', ...results.map((r) => `${r.spokes.toLocaleString('en-US')} spokes`)]
  const growth = first !== undefined && last !== undefined && first !== last
  if (growth) header.push(`× from ${first.spokes} to ${last.spokes}`)
  header.push(`target at ${last?.spokes.toLocaleString('en-US') ?? '—'}`)
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map((_, i) => i === 0 ? '---' : '---:').join(' | ')} |`]
  for (const row of ROWS) {
    const cells = [row.label, ...results.map((r) => formatCell(row.value(r), row.digits ?? 1))]
    if (growth) {
      const a = row.value(first)
      const b = row.value(last)
      cells.push(typeof a === 'number' && typeof b === 'number' && a !== 0 && Number.isFinite(b / a) ? `${(b / a).toFixed(2)}×` : '')
    }
    cells.push(last === undefined || row.target === undefined ? '' : row.target(last))
    lines.push(`| ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** Per second since the SIGTERM: the agents' view (lost, first retries, attempts, back) and the new exit-node's. */
function renderRestartSeconds (r: FleetResult): string {
  const lines = [
    `restart of ${r.spokes.toLocaleString('en-US')} spokes, per second since the SIGTERM (old exit-node shut down at ${r.shutdownDoneS.toFixed(1)} s, new one listening at ${r.listeningS.toFixed(1)} s):`,
    '',
    '| second | sessions lost | first retries | upgrade attempts | agents back | sessions opened (exit-node log) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const [i, s] of r.restartSeconds.entries()) lines.push(`| ${i} | ${s.lost} | ${s.first} | ${s.attempts} | ${s.back} | ${s.opened} |`)
  return lines.join('\n')
}

async function main (): Promise<void> {
  const options = parseOptions()
  const baseDir = mkdtempSync(join(tmpdir(), 'spokelink-fleet-'))
  process.on('exit', () => { rmSync(baseDir, { recursive: true, force: true }) })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { process.exit(130) })
  const started = performance.now()
  const results: FleetResult[] = []
  try {
    const tls = options.tls ? await writeTlsFixtureFiles(baseDir) : undefined
    for (const spokes of options.spokes) results.push(await runFleet(spokes, options, baseDir, tls))
  } finally {
    await killAllProcesses()
  }
  const cpu = cpus()
  process.stdout.write([
    '## spokelink fleet benchmark (loopback)',
    '',
    `- machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Linux ${release()}; node ${process.version}`,
    `- one exit-node child (${options.tls ? 'wss' : 'ws'}); agents in ${options.agentProcesses} processes, one session per spoke; /federate ${options.responseBytes.toLocaleString('en-US')} bytes from an upstream in the agents' process`,
    `- every spoke scraped every ${options.intervalMs / 1000} s on a new connection at a per-target offset (hash of its name), and directly half an interval later; ` +
      `one interval of warm-up, then ${options.durationMs / 1000} s measured; restart = ${options.restartSignal}, the same command again, until every agent reports connected`,
    '- upgrade attempts counted at the agents (each entry into state `connecting`), summed per second since the SIGTERM; the agents back off 1 s → 30 s with full jitter, ' +
      `after the exit-node's planned close within 2 s, 4 s, then ${(options.agentBackoff.plannedMaxDelayMs ?? BACKOFF_DEFAULTS.plannedMaxDelayMs) / 1000} s for ${(options.agentBackoff.plannedWindowMs ?? BACKOFF_DEFAULTS.plannedWindowMs) / 1000} s`,
    '',
    renderFleetTable(results),
    '',
    ...results.flatMap((r) => [renderRestartSeconds(r), '']),
    `whole run: ${((performance.now() - started) / 1000).toFixed(0)} s`,
    '',
  ].join('\n'))
}

await main()
