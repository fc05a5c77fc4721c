/**
 * `pnpm bench`: the tunnel against raw TCP and the peers a user would pick instead, on loopback, in one process tree.
 * Prints a short machine header and one markdown table on stdout; progress goes to stderr.
 *
 * Options (flag or env): `--rounds N` (BENCH_ROUNDS, default 5), `--bulk-mib N` (BENCH_BULK_MIB, default 512),
 * `--gets N` 2 KB GETs per round and system (BENCH_GETS, default 200), `--sessions N` idle sessions
 * (BENCH_SESSIONS, default 1000), `--only a,b` systems whose name contains a or b (BENCH_ONLY), `--gets-only` the
 * 2 KB GETs alone: no bulk, no 5 MB GETs, no idle sessions (BENCH_GETS_ONLY=1), for comparing builds on the
 * stream-open path.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { killAllProcesses, runProcess, writeTlsFixtureFiles } from '@spokelink/testkit'
import type { RunningProcess } from '@spokelink/testkit'
import { BULK_MODE } from './peers/bulk-protocol.js'
import { measureIdleSessions } from './lib/idle-sessions.js'
import { METRICS, Results } from './lib/results.js'
import { bestPeer, formatRatio, renderTable } from './lib/table.js'
import type { Floor, TableSystem, Target } from './lib/table.js'
import { cpuSpent, readTreeCpu } from './lib/proc-cpu.js'
import { bulkThroughput, bulkTransfer, megabytesPerSecond, sequentialGets, timedGet } from './lib/workloads.js'
import { chisel } from './systems/chisel.js'
import { frp } from './systems/frp.js'
import { nodeRelayFloor, nodeRelayTlsFloor } from './systems/node-relay.js'
import { rathole } from './systems/rathole.js'
import { rawTcp } from './systems/raw-tcp.js'
import { spokelinkWs, spokelinkWss } from './systems/spokelink.js'
import { sshForward, sshForwardPty } from './systems/ssh.js'
import type { RunningSystem, SystemContext, SystemSpec, UpstreamPorts } from './systems/system.js'

const SYSTEMS: readonly SystemSpec[] = [rawTcp, nodeRelayFloor, nodeRelayTlsFloor, spokelinkWs, spokelinkWss, sshForward, sshForwardPty, rathole, frp, chisel]
/** The ratio columns besides raw TCP and the best peer. */
const FLOORS: readonly Floor[] = [{ label: 'Node floor', system: nodeRelayFloor.name }, { label: 'TLS floor', system: nodeRelayTlsFloor.name }]
const UPSTREAM = fileURLToPath(new URL('./peers/upstream.ts', import.meta.url))
const MIB = 1024 * 1024
const PARALLEL_STREAMS = 16
const GET_SMALL_BYTES = 2 * 1024
const GET_LARGE_BYTES = 5 * 1000 * 1000
const LARGE_GETS_PER_ROUND = 10
const WARMUP_BULK_BYTES = 64 * MIB
const WARMUP_GETS = 50

interface BenchOptions {
  rounds: number
  bulkBytes: number
  getsPerRound: number
  sessions: number
  only: string[]
  getsOnly: boolean
}

interface SystemState extends TableSystem {
  spec: SystemSpec
  running?: RunningSystem
}

function log (message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}

function positiveInt (name: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name}: expected a positive integer, got "${text}"`)
  return value
}

function parseOptions (): BenchOptions {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string' },
      'bulk-mib': { type: 'string' },
      gets: { type: 'string' },
      sessions: { type: 'string' },
      only: { type: 'string' },
      'gets-only': { type: 'boolean' },
    },
  })
  const env = process.env
  const only = values.only ?? env.BENCH_ONLY ?? ''
  return {
    rounds: positiveInt('rounds', values.rounds ?? env.BENCH_ROUNDS, 5),
    bulkBytes: positiveInt('bulk-mib', values['bulk-mib'] ?? env.BENCH_BULK_MIB, 512) * MIB,
    getsPerRound: positiveInt('gets', values.gets ?? env.BENCH_GETS, 200),
    sessions: positiveInt('sessions', values.sessions ?? env.BENCH_SESSIONS, 1000),
    only: only.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''),
    getsOnly: values['gets-only'] === true || env.BENCH_GETS_ONLY === '1',
  }
}

/** First line of `command args` output; OpenSSH prints its version on stderr. */
function commandVersion (command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' })
  if (result.error !== undefined) return `${command}: not installed`
  return `${result.stdout}${result.stderr}`.trim().split('\n')[0] ?? ''
}

function formatLoad (): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ')
}

function machineHeader (options: BenchOptions, loadAtStart: string): string {
  const cpu = cpus()
  const ssh = commandVersion('ssh', ['-V'])
  return [
    '## spokelink tunnel benchmark (loopback)',
    '',
    `- machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Linux ${release()}`,
    `- node ${process.version}; ${ssh}`,
    `- load average (1/5/15 min) at start: ${loadAtStart}, at end: ${formatLoad()} — everything else running on the box competes for the same cores`,
    options.getsOnly
      ? `- rounds: ${options.rounds} (systems interleaved within each round); --gets-only: 2 KB GETs alone, ${options.getsPerRound} per round, each on a new connection`
      : `- rounds: ${options.rounds} (systems interleaved within each round); bulk: 1 stream × ${options.bulkBytes / MIB} MiB, ${PARALLEL_STREAMS} streams × ${options.bulkBytes / MIB / PARALLEL_STREAMS} MiB; ` +
        `2 KB GETs: ${options.getsPerRound} per round, each on a new connection; 5 MB GETs: ${LARGE_GETS_PER_ROUND} per round; idle sessions: ${options.sessions}`,
    '- MB/s = 10^6 bytes/s, median of rounds; GET latency from request to last byte, percentiles over all rounds; ↓ = upstream → client, ↑ = client → upstream',
    '- CPU: user + system seconds of the tunnel\'s processes and their children (not the upstream, not the client) from /proc/<pid>/stat during the 1-stream download, per GiB, ' +
      'and during the 2 KB GETs, per GET (both processes together; /proc counts in 10 ms ticks, so a round needs a few hundred GETs), median of rounds',
    '- ratios are system ÷ reference: below 1× is slower for MB/s, above 1× is slower for ms and bigger for KiB and s/GiB',
  ].join('\n')
}

async function startUpstream (): Promise<{ child: RunningProcess, ports: UpstreamPorts }> {
  const child = runProcess(process.execPath, ['--import', 'tsx', UPSTREAM], { name: 'upstream' })
  const line = await child.waitForLog((entry) => typeof entry.bulkPort === 'number', { what: 'the upstream to listen', timeoutMs: 20_000 })
  return { child, ports: { bulkPort: Number(line.bulkPort), httpPort: Number(line.httpPort) } }
}

async function startSystems (specs: readonly SystemSpec[], context: Omit<SystemContext, 'dir'>, baseDir: string): Promise<SystemState[]> {
  const states: SystemState[] = []
  for (const spec of specs) {
    const dir = join(baseDir, spec.name.replace(/[^a-z0-9]+/gi, '-'))
    mkdirSync(dir, { recursive: true })
    const state: SystemState = { spec, name: spec.name, kind: spec.kind }
    try {
      const started = await spec.start({ ...context, dir })
      if ('skipped' in started) state.skipped = started.skipped
      else state.running = started.running
    } catch (err) {
      state.skipped = `failed to start: ${errorMessage(err)}`
    }
    log(`${spec.name}: ${state.skipped === undefined ? 'up' : state.skipped}`)
    states.push(state)
  }
  return states
}

function errorMessage (err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''
}

async function warmUp (system: SystemState, running: RunningSystem, options: BenchOptions): Promise<void> {
  if (system.spec.bulk && !options.getsOnly) {
    await bulkTransfer(running.bulkPort, BULK_MODE.download, WARMUP_BULK_BYTES)
    await bulkTransfer(running.bulkPort, BULK_MODE.upload, WARMUP_BULK_BYTES)
  }
  await sequentialGets(running.httpPort, GET_SMALL_BYTES, WARMUP_GETS)
  if (!options.getsOnly) await timedGet(running.httpPort, GET_LARGE_BYTES)
}

async function measureRound (system: SystemState, running: RunningSystem, options: BenchOptions, results: Results): Promise<void> {
  const { name } = system
  const pids = Object.values(running.pids ?? {})
  if (system.spec.bulk && !options.getsOnly) {
    const cpuBefore = await readTreeCpu(pids)
    results.add(name, 'bulk1Down', await bulkThroughput(running.bulkPort, BULK_MODE.download, options.bulkBytes, 1))
    // CPU seconds per GiB of the tunnel's processes (and their children, e.g. sshd's per-connection one); none for raw TCP.
    if (pids.length > 0) results.add(name, 'cpu1Down', cpuSpent(cpuBefore, await readTreeCpu(pids)) / (options.bulkBytes / 2 ** 30))
    results.add(name, 'bulk1Up', await bulkThroughput(running.bulkPort, BULK_MODE.upload, options.bulkBytes, 1))
    results.add(name, 'bulk16Down', await bulkThroughput(running.bulkPort, BULK_MODE.download, options.bulkBytes, PARALLEL_STREAMS))
  }
  const getCpuBefore = pids.length > 0 ? await readTreeCpu(pids) : undefined
  const small = await sequentialGets(running.httpPort, GET_SMALL_BYTES, options.getsPerRound)
  // Both tunnel processes together, like the CPU per GiB: the figure that survives a loaded box.
  if (getCpuBefore !== undefined) results.add(name, 'cpuGet2k', 1e6 * cpuSpent(getCpuBefore, await readTreeCpu(pids)) / options.getsPerRound)
  results.add(name, 'get2kP50', ...small)
  results.add(name, 'get2kP99', ...small)
  if (options.getsOnly) return
  const large = await sequentialGets(running.httpPort, GET_LARGE_BYTES, LARGE_GETS_PER_ROUND)
  results.add(name, 'get5m', ...large.map((ms) => megabytesPerSecond(GET_LARGE_BYTES, ms)))
}

/** Runs every round over every live system; a system that fails is dropped with its error as the reason. */
async function runRounds (systems: SystemState[], options: BenchOptions, results: Results): Promise<void> {
  for (let round = 0; round <= options.rounds; round++) {
    const started = performance.now()
    for (const system of systems) {
      const { running } = system
      if (running === undefined || system.skipped !== undefined) continue
      try {
        if (round === 0) await warmUp(system, running, options)
        else await measureRound(system, running, options, results)
      } catch (err) {
        system.skipped = `failed in round ${round}: ${errorMessage(err)}`
        log(`${system.name}: ${system.skipped}`)
        await running.close()
      }
    }
    log(`${round === 0 ? 'warm-up' : `round ${round}/${options.rounds}`} done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  }
}

async function measureIdle (context: Omit<SystemContext, 'dir'>, baseDir: string, systems: SystemState[], options: BenchOptions, results: Results): Promise<void> {
  for (const [spec, tls] of [[spokelinkWs, false], [spokelinkWss, true]] as const) {
    if (!systems.some((s) => s.spec === spec)) continue
    const dir = join(baseDir, `idle-${tls ? 'wss' : 'ws'}`)
    mkdirSync(dir, { recursive: true })
    try {
      const idle = await measureIdleSessions({ ...context, dir }, tls, options.sessions)
      results.set(spec.name, 'idleRss', idle.perSessionKiB)
      log(`${spec.name}: ${idle.sessions} idle sessions connected in ${idle.connectMs} ms; exit-node RSS ${idle.rssBeforeKiB} → ${idle.rssAfterKiB} KiB`)
    } catch (err) {
      log(`${spec.name}: idle-session measurement failed: ${errorMessage(err)}`)
    }
  }
}

const ssh = (system: TableSystem): boolean => system.name.startsWith('ssh')

/** `≥ 0.8× ssh -N -R: 0.91× ✅`, or why there is no ratio. */
function ratioVerdict (label: string, value: number, reference: number | undefined, bound: number, better: 'higher' | 'lower'): string {
  if (reference === undefined) return `${better === 'higher' ? '≥' : '≤'} ${bound}× ${label}: n/a`
  const ratio = value / reference
  const met = better === 'higher' ? ratio >= bound : ratio <= bound
  return `${better === 'higher' ? '≥' : '≤'} ${bound}× ${label}: ${formatRatio(ratio)} ${met ? '✅' : '❌'}`
}

/** Issue 12's single-tunnel targets, as ratios to the floors and peers measured in this run. */
function issueTargets (systems: readonly SystemState[]): Target[] {
  const isWss = (system: TableSystem): boolean => system.name === spokelinkWss.name
  const isSpokelink = (system: TableSystem): boolean => system.kind === 'spokelink'
  const sshFigure = (metric: 'bulk1Down' | 'bulk1Up' | 'bulk16Down', results: Results): { name: string, value: number } | undefined =>
    bestPeer(METRICS.find((m) => m.id === metric) ?? METRICS[0], systems.filter(ssh), results)
  const vsPeers = (metric: 'bulk1Down' | 'bulk1Up'): Target => ({
    metric,
    applies: isWss,
    verdict: (value, results) => {
      const sshBest = sshFigure(metric, results)
      return [
        ratioVerdict(rathole.name, value, results.figure(rathole.name, metric), 1, 'higher'),
        ratioVerdict(sshBest?.name ?? 'ssh -R', value, sshBest?.value, 0.8, 'higher'),
      ].join('; ')
    },
  })
  const vsFloor = (metric: 'get2kP50' | 'get2kP99'): Target => ({
    metric,
    applies: isSpokelink,
    verdict: (value, results) => ratioVerdict(nodeRelayFloor.name, value, results.figure(nodeRelayFloor.name, metric), 1.1, 'lower'),
  })
  return [
    vsPeers('bulk1Down'),
    vsPeers('bulk1Up'),
    {
      metric: 'bulk16Down',
      applies: isWss,
      verdict: (value, results) => {
        const best = sshFigure('bulk16Down', results)
        return ratioVerdict(best?.name ?? 'ssh -R', value, best?.value, 0.8, 'higher')
      },
    },
    {
      metric: 'cpu1Down',
      applies: isWss,
      verdict: (value, results) => ratioVerdict(nodeRelayTlsFloor.name, value, results.figure(nodeRelayTlsFloor.name, 'cpu1Down'), 1.2, 'lower'),
    },
    {
      metric: 'cpu1Down',
      applies: (system) => system.name === spokelinkWs.name,
      verdict: (value, results) => ratioVerdict(nodeRelayFloor.name, value, results.figure(nodeRelayFloor.name, 'cpu1Down'), 1.3, 'lower'),
    },
    vsFloor('get2kP50'),
    vsFloor('get2kP99'),
    { metric: 'idleRss', applies: isSpokelink, verdict: (value) => `≤ 64 KiB ${value <= 64 ? '✅' : '❌'}` },
  ]
}

function installSignalHandlers (baseDir: string): void {
  // testkit's exit hook SIGKILLs every child still running; the temp dir goes with it.
  process.on('exit', () => { rmSync(baseDir, { recursive: true, force: true }) })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      log(`${signal}: stopping`)
      process.exit(130)
    })
  }
}

async function main (): Promise<void> {
  const options = parseOptions()
  const baseDir = mkdtempSync(join(tmpdir(), 'spokelink-bench-'))
  installSignalHandlers(baseDir)
  const specs = SYSTEMS.filter((spec) => spec === rawTcp || options.only.length === 0 || options.only.some((o) => spec.name.toLowerCase().includes(o)))
  const started = performance.now()
  const loadAtStart = formatLoad()
  const results = new Results()
  let systems: SystemState[] = []
  try {
    const tls = await writeTlsFixtureFiles(baseDir)
    const upstream = await startUpstream()
    const context = { upstream: upstream.ports, tls }
    systems = await startSystems(specs, context, baseDir)
    await runRounds(systems, options, results)
    for (const system of systems) await system.running?.close()
    if (!options.getsOnly) await measureIdle(context, baseDir, systems, options, results)
  } finally {
    await Promise.all(systems.map(async (system) => system.running?.close()))
    await killAllProcesses()
  }
  process.stdout.write(machineHeader(options, loadAtStart) + '\n\n')
  process.stdout.write(renderTable(systems, results, issueTargets(systems), FLOORS) + '\n\n')
  for (const system of systems) {
    if (system.skipped !== undefined) process.stdout.write(`${system.name}: skipped (${system.skipped})\n`)
  }
  process.stdout.write(`\nwhole run: ${((performance.now() - started) / 1000).toFixed(0)} s\n`)
}

await main()
