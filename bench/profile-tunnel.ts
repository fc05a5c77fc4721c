/**
 * Profiles the tunnel's two processes under one workload: `tsx bench/profile-tunnel.ts [--tls | --floor] [--workload get2k|down|up]
 * [--count N] [--no-profile] [--trace-gc] [--node-arg=--flag …]`. Runs exit-node and agent with `node --cpu-prof`, reports their CPU time per operation (from /proc)
 * and the functions with the most self time in each profile.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { killAllProcesses, runProcess, writeTlsFixtureFiles } from '@spokelink/testkit'
import type { RunningProcess } from '@spokelink/testkit'
import { BULK_MODE } from './peers/bulk-protocol.js'
import { percentile } from './lib/stats.js'
import { bulkThroughput, sequentialGets } from './lib/workloads.js'
import { nodeRelayFloor } from './systems/node-relay.js'
import { spokelinkWs, spokelinkWss } from './systems/spokelink.js'

const UPSTREAM = fileURLToPath(new URL('./peers/upstream.ts', import.meta.url))
const CLOCK_TICKS_PER_SECOND = 100
const TOP_FUNCTIONS = 25
const WARMUP_GETS = 500

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  hitCount?: number
}
interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** utime and stime of `pid` in ms, from /proc/<pid>/stat. */
async function cpuMs (pid: number): Promise<{ user: number, sys: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: (Number(fields[11]) * 1000) / CLOCK_TICKS_PER_SECOND, sys: (Number(fields[12]) * 1000) / CLOCK_TICKS_PER_SECOND }
}

function shortUrl (url: string): string {
  return url.replace(/^file:\/\/.*\/node_modules\/\.pnpm\/[^/]+\/node_modules\//, '').replace(/^file:\/\/\/work\/main\//, '')
}

/** Self time per function (ms), summed over the profile's samples. */
function selfTimes (profile: CpuProfile): Array<{ name: string, ms: number }> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const totals = new Map<string, number>()
  profile.samples.forEach((id, i) => {
    const node = byId.get(id)
    if (node === undefined) return
    const { functionName, url, lineNumber } = node.callFrame
    const name = `${functionName === '' ? '(anonymous)' : functionName} ${shortUrl(url)}${url === '' ? '' : `:${lineNumber + 1}`}`
    totals.set(name, (totals.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000)
  })
  return [...totals].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms)
}

function report (dir: string, role: string, pid: number): void {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile
    const times = selfTimes(profile)
    const total = times.reduce((sum, t) => sum + t.ms, 0)
    process.stdout.write(`\n### ${role} (${file}), ${total.toFixed(0)} ms sampled\n`)
    for (const { name, ms } of times.slice(0, TOP_FUNCTIONS)) {
      process.stdout.write(`${ms.toFixed(0).padStart(7)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${name}\n`)
    }
  }
}

/** Counts `--trace-gc` lines by kind (Scavenge, Mark-Compact, …) and their summed pause per role. */
function reportGc (processes: Record<string, RunningProcess>, dir: string): void {
  for (const [role, child] of Object.entries(processes)) {
    const file = join(dir, `gc-${role}.log`)
    writeFileSync(file, child.stdoutLines.filter((line) => line.includes(' ms: ')).join('\n') + '\n')
    const kinds = new Map<string, { count: number, ms: number }>()
    for (const line of child.stdoutLines) {
      const match = /ms: (Scavenge|Mark-Compact \(reduce\)|Mark-Compact|Minor Mark-Compact|Mark-Sweep)\b.*?MB, ([\d.]+) \/ [\d.]+ ms/.exec(line)
      if (match?.[1] === undefined) continue
      // What started it (V8's reason at the end of the line): "external memory pressure" is the Buffers' backing stores.
      const reason = /current mu = [\d.]+\) ([^;]+)/.exec(line)?.[1]?.trim() ?? 'unknown'
      const key = `${match[1]} [${reason}]`
      const kind = kinds.get(key) ?? { count: 0, ms: 0 }
      kind.count += 1
      kind.ms += Number(match[2])
      kinds.set(key, kind)
    }
    const text = [...kinds].map(([kind, { count, ms }]) => `${kind} ×${count} (${ms.toFixed(0)} ms)`).join(', ')
    process.stdout.write(`${role} GC since start: ${text === '' ? 'none' : text}; the lines in ${file}\n`)
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { tls: { type: 'boolean' }, workload: { type: 'string' }, count: { type: 'string' }, 'trace-gc': { type: 'boolean' }, 'no-profile': { type: 'boolean' }, floor: { type: 'boolean' }, 'node-arg': { type: 'string', multiple: true } } })
  const workload = values.workload ?? 'get2k'
  const count = Number(values.count ?? (workload === 'get2k' ? 2000 : 2048))
  const base = mkdtempSync(join(tmpdir(), 'spokelink-profile-'))
  const profDir = join(base, 'profiles')
  let pids: Record<string, number> = {}
  try {
    const tls = await writeTlsFixtureFiles(base)
    const upstreamChild = runProcess(process.execPath, ['--import', 'tsx', UPSTREAM], { name: 'upstream' })
    const line = await upstreamChild.waitForLog((entry) => typeof entry.bulkPort === 'number', { what: 'the upstream' })
    const upstream = { bulkPort: Number(line.bulkPort), httpPort: Number(line.httpPort) }
    // --floor: the two plain Node relays instead (CPU per operation only; they run under tsx, so no profile).
    const spec = values.floor === true ? nodeRelayFloor : values.tls === true ? spokelinkWss : spokelinkWs
    // Node names each profile CPU.<date>.<time>.<pid>.…, which tells the exit-node's from the agent's.
    const started = await spec.start({ dir: base, upstream, tls, nodeArgs: [...(values['no-profile'] === true ? [] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`]), ...(values['trace-gc'] === true ? ['--trace-gc'] : []), ...(values['node-arg'] ?? [])] })
    if (!('running' in started)) throw new Error(started.skipped)
    const { running } = started
    pids = running.pids ?? {}
    // Past the JIT's warm-up, so a short run measures the steady state (and before/after builds compare fairly).
    if (workload === 'get2k') await sequentialGets(running.httpPort, 2048, WARMUP_GETS)
    const before = Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([role, pid]) => [role, await cpuMs(pid)] as const)))
    const t0 = performance.now()
    let unit = ''
    let ops = 0
    if (workload === 'get2k') {
      const samples = await sequentialGets(running.httpPort, 2048, count)
      process.stdout.write(`2 KB GET p50 ${percentile(samples, 50).toFixed(2)} ms, p99 ${percentile(samples, 99).toFixed(2)} ms over ${count}\n`)
      unit = 'GET'
      ops = count
    } else {
      const mode = workload === 'up' ? BULK_MODE.upload : BULK_MODE.download
      const mbps = await bulkThroughput(running.bulkPort, mode, count * 1024 * 1024, 1)
      process.stdout.write(`1 stream ${workload}: ${mbps.toFixed(0)} MB/s over ${count} MiB\n`)
      unit = 'MiB'
      ops = count
    }
    const wallMs = performance.now() - t0
    for (const [role, pid] of Object.entries(pids)) {
      const after = await cpuMs(pid)
      const user = after.user - (before[role]?.user ?? 0)
      const sys = after.sys - (before[role]?.sys ?? 0)
      const used = user + sys
      process.stdout.write(`${role}: ${used.toFixed(0)} ms CPU in ${wallMs.toFixed(0)} ms wall (${(100 * used / wallMs).toFixed(0)}% of a core), ` +
        `${(1000 * used / ops).toFixed(0)} µs CPU per ${unit} (user ${(1000 * user / ops).toFixed(0)}, sys ${(1000 * sys / ops).toFixed(0)})\n`)
    }
    if (values['trace-gc'] === true) reportGc(running.processes ?? {}, base)
    await running.close()
  } finally {
    await killAllProcesses()
  }
  if (!existsSync(profDir)) return
  for (const [role, pid] of Object.entries(pids)) report(profDir, role, pid)
  process.stdout.write(`\nprofiles kept in ${profDir}\n`)
}

await main()
