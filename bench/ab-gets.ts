/**
 * CPU per 2 KB GET of two builds measured side by side: `tsx bench/ab-gets.ts <dir A> <dir B> [--rounds N]
 * [--count N] [--tls]`, each dir a built worktree. Both tunnels run at once and the GETs alternate between
 * them one by one (the order flipping every GET), so whatever else loads the box loads both builds alike;
 * each round prints both builds' CPU per GET (exit-node/agent, from /proc) and B ÷ A. Run it both ways round
 * (A B, then B A) and take the geometric mean of the two medians: the same build on both sides gave
 * medians 1.016 and 0.978.
 *
 * Why: on the shared 2-core box, separate runs of one build (`profile-tunnel.ts`) spread by ±20 % in CPU per
 * GET, which hides a lever of a few per cent however the runs are alternated; side by side, rounds mostly
 * agree within ±3 %.
 */
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { killAllProcesses, runProcess, writeTlsFixtureFiles } from '@spokelink/testkit'
import { readCpuSeconds } from './lib/proc-cpu.js'
import { timedGet } from './lib/workloads.js'
import type * as SpokelinkSystemsModule from './systems/spokelink.js'
import type { RunningSystem } from './systems/system.js'

type SpokelinkSystems = typeof SpokelinkSystemsModule

const WARMUP_GETS = 500
const GET_BYTES = 2048

/** user + system CPU of each process, in ms. */
async function cpuMs (pids: readonly number[]): Promise<number[]> {
  return Promise.all(pids.map(async (pid) => 1000 * await readCpuSeconds(pid)))
}

/** A build's bench systems, loaded from its own worktree (so its own built CLI runs). */
async function systemsOf (dir: string): Promise<SpokelinkSystems> {
  return await import(join(dir, 'bench/systems/spokelink.ts')) as SpokelinkSystems
}

function median (values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.floor(sorted.length / 2)] ?? NaN
}

async function main (): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { rounds: { type: 'string' }, count: { type: 'string' }, tls: { type: 'boolean' } },
  })
  const [dirA, dirB] = positionals.map((dir) => resolve(dir))
  if (dirA === undefined || dirB === undefined) throw new Error('usage: tsx bench/ab-gets.ts <dir A> <dir B> [--rounds N] [--count N] [--tls]')
  const rounds = Number(values.rounds ?? 5)
  const count = Number(values.count ?? 1500)
  const base = mkdtempSync(join(tmpdir(), 'spokelink-ab-gets-'))
  try {
    const upstreamChild = runProcess(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'peers/upstream.ts')], { name: 'upstream' })
    const line = await upstreamChild.waitForLog((entry) => typeof entry.bulkPort === 'number', { what: 'the upstream' })
    const upstream = { bulkPort: Number(line.bulkPort), httpPort: Number(line.httpPort) }
    const tls = await writeTlsFixtureFiles(base)
    const start = async (dir: string, name: string): Promise<RunningSystem> => {
      const systems = await systemsOf(dir)
      const spec = values.tls === true ? systems.spokelinkWss : systems.spokelinkWs
      const sub = join(base, name)
      mkdirSync(sub)
      const started = await spec.start({ dir: sub, upstream, tls })
      if (!('running' in started)) throw new Error(`${name}: ${started.skipped}`)
      return started.running
    }
    const a = await start(dirA, 'a')
    const b = await start(dirB, 'b')
    const pidsA = Object.values(a.pids ?? {})
    const pidsB = Object.values(b.pids ?? {})
    for (let i = 0; i < WARMUP_GETS; i++) {
      await timedGet(a.httpPort, GET_BYTES)
      await timedGet(b.httpPort, GET_BYTES)
    }
    const ratios: number[] = []
    process.stdout.write(`A ${dirA}\nB ${dirB}\n${values.tls === true ? 'wss' : 'ws'}, ${count} GETs per build per round\n`)
    for (let round = 1; round <= rounds; round++) {
      const beforeA = await cpuMs(pidsA)
      const beforeB = await cpuMs(pidsB)
      for (let i = 0; i < count; i++) {
        const [first, second] = i % 2 === 0 ? [a, b] : [b, a]
        await timedGet(first.httpPort, GET_BYTES)
        await timedGet(second.httpPort, GET_BYTES)
      }
      const usedA = (await cpuMs(pidsA)).map((ms, i) => ms - (beforeA[i] ?? 0))
      const usedB = (await cpuMs(pidsB)).map((ms, i) => ms - (beforeB[i] ?? 0))
      const perGet = (used: number[]): string => used.map((ms) => (1000 * ms / count).toFixed(0)).join('/')
      const ratio = usedB.reduce((sum, ms) => sum + ms, 0) / usedA.reduce((sum, ms) => sum + ms, 0)
      ratios.push(ratio)
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0] ?? '?'
      process.stdout.write(`round ${round}: A ${perGet(usedA)} µs/GET (exit-node/agent), B ${perGet(usedB)}, B ÷ A ${ratio.toFixed(3)}, load ${load}\n`)
    }
    process.stdout.write(`median B ÷ A ${median(ratios).toFixed(3)}\n`)
    await a.close()
    await b.close()
  } finally {
    await killAllProcesses()
  }
}

await main()
