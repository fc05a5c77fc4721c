/**
 * `pnpm bench:policy`: what `--read-only` costs at the agent (issue 10, part 1). One exit-node and two agents as
 * child processes (the built CLI), one plain and one with `--read-only prometheus`, in front of the same in-process
 * HTTP upstream that plays Prometheus. For each: keep-alive 2 KB query GETs (latency, agent CPU per request), one
 * new connection per GET, and `/federate` bodies of `--federate-mib` MiB (throughput, agent CPU per MiB, agent RSS).
 * Agent CPU comes from /proc/<pid>/stat (Linux). Prints one markdown table on stdout; progress goes to stderr.
 *
 * Options (flag or env): `--rounds N` (BENCH_ROUNDS, 3), `--gets N` (BENCH_GETS, 2000), `--federate-mib N`
 * (BENCH_FEDERATE_MIB, 256).
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createSpokeToken } from '@spokelink/auth'
import { killAllProcesses, listenLoopback, runSpokelink } from '@spokelink/testkit'
import type { RunningProcess } from '@spokelink/testkit'
import { pickNamedPorts } from './lib/ports.js'
import { median } from './lib/stats.js'

const MIB = 1024 * 1024
const QUERY_BODY = Buffer.alloc(2 * 1024, 'q')
const FEDERATE_CHUNK = Buffer.alloc(64 * 1024, 'f')
const CLOCK_TICKS_PER_SECOND = 100

function log (message: string): void {
  process.stderr.write(`[bench:policy] ${message}\n`)
}

function positiveInt (name: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name}: expected a positive integer, got "${text}"`)
  return value
}

/** Plays Prometheus: `/api/v1/query` answers 2 KB, `/federate?bytes=N` streams N bytes. */
function startUpstream (): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://upstream')
    if (url.pathname === '/federate') {
      let left = Number(url.searchParams.get('bytes') ?? '0')
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' })
      const pump = (): void => {
        while (left > 0) {
          const chunk = left >= FEDERATE_CHUNK.length ? FEDERATE_CHUNK : FEDERATE_CHUNK.subarray(0, left)
          left -= chunk.length
          if (!res.write(chunk)) {
            res.once('drain', pump)
            return
          }
        }
        res.end()
      }
      pump()
      return
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': QUERY_BODY.length })
    res.end(QUERY_BODY)
  })
}

/** CPU milliseconds (user + system) the process has used so far. */
function cpuMs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS_PER_SECOND
}

function rssMiB (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN')
  return kb / 1024
}

async function getOnce (agent: http.Agent | false, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => { bytes += chunk.length })
      res.on('end', () => { res.statusCode === 200 ? resolve(bytes) : reject(new Error(`GET ${path}: HTTP ${res.statusCode ?? 0}`)) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

interface Row { keepAliveUs: number[], keepAliveCpuUs: number[], newConnUs: number[], federateMiBs: number[], federateCpuMsPerMiB: number[], rssMiB: number[] }

async function measure (name: string, port: number, agentPid: number, options: { gets: number, federateBytes: number }, row: Row): Promise<void> {
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 })
  try {
    for (let i = 0; i < 50; i++) await getOnce(keepAlive, port, '/api/v1/query?query=up')
    const samples: number[] = []
    const cpuBefore = cpuMs(agentPid)
    for (let i = 0; i < options.gets; i++) {
      const started = performance.now()
      await getOnce(keepAlive, port, '/api/v1/query?query=up')
      samples.push((performance.now() - started) * 1000)
    }
    row.keepAliveCpuUs.push((cpuMs(agentPid) - cpuBefore) * 1000 / options.gets)
    row.keepAliveUs.push(median(samples))
  } finally {
    keepAlive.destroy()
  }
  const fresh: number[] = []
  for (let i = 0; i < Math.max(50, Math.floor(options.gets / 10)); i++) {
    const started = performance.now()
    await getOnce(false, port, '/api/v1/query?query=up')
    fresh.push((performance.now() - started) * 1000)
  }
  row.newConnUs.push(median(fresh))
  const cpuBefore = cpuMs(agentPid)
  const started = performance.now()
  const bytes = await getOnce(false, port, `/federate?match[]=up&bytes=${options.federateBytes}`)
  const seconds = (performance.now() - started) / 1000
  if (bytes !== options.federateBytes) throw new Error(`${name}: /federate gave ${bytes} of ${options.federateBytes} bytes`)
  row.federateMiBs.push(bytes / MIB / seconds)
  row.federateCpuMsPerMiB.push((cpuMs(agentPid) - cpuBefore) / (bytes / MIB))
  row.rssMiB.push(rssMiB(agentPid))
  log(`${name}: keep-alive p50 ${median(row.keepAliveUs).toFixed(0)} µs, /federate ${row.federateMiBs.at(-1)?.toFixed(0) ?? '?'} MiB/s`)
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string' }, gets: { type: 'string' }, 'federate-mib': { type: 'string' } } })
  const rounds = positiveInt('rounds', values.rounds ?? process.env.BENCH_ROUNDS, 3)
  const gets = positiveInt('gets', values.gets ?? process.env.BENCH_GETS, 2000)
  const federateBytes = positiveInt('federate-mib', values['federate-mib'] ?? process.env.BENCH_FEDERATE_MIB, 256) * MIB
  const dir = await mkdtemp(join(tmpdir(), 'spokelink-bench-policy-'))
  const upstream = startUpstream()
  const children: RunningProcess[] = []
  try {
    const upstreamPort = await listenLoopback(upstream)
    const { plainPort, policedPort } = await pickNamedPorts(['plainPort', 'policedPort'])
    const plainToken = createSpokeToken()
    const policedToken = createSpokeToken()
    const spokesFile = join(dir, 'spokes.json')
    await writeFile(spokesFile, JSON.stringify({
      spokes: [
        { name: 'plain', tokens: [{ id: plainToken.id, sha256: plainToken.sha256 }], ports: [{ upstream: 'prometheus', listen: `127.0.0.1:${plainPort}` }] },
        { name: 'policed', tokens: [{ id: policedToken.id, sha256: policedToken.sha256 }], ports: [{ upstream: 'prometheus', listen: `127.0.0.1:${policedPort}` }] },
      ],
    }))
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--spokes', spokesFile, '--shutdown-grace', '1s'], { name: 'exit-node' })
    children.push(server)
    const listening = await server.waitForLog((e) => e.msg === 'listening', { what: 'exit-node listening', timeoutMs: 20_000 })
    const url = `ws://127.0.0.1:${Number(listening.port)}/connect`
    const agents: Record<'plain' | 'policed', RunningProcess> = {
      plain: runSpokelink(['agent', '--server', url, '--upstream', `prometheus=127.0.0.1:${upstreamPort}`, '--log-level', 'info'], { name: 'agent plain', env: { SPOKELINK_TOKEN: plainToken.token } }),
      policed: runSpokelink(['agent', '--server', url, '--upstream', `prometheus=127.0.0.1:${upstreamPort}`, '--read-only', 'prometheus', '--log-level', 'info'], { name: 'agent read-only', env: { SPOKELINK_TOKEN: policedToken.token } }),
    }
    children.push(agents.plain, agents.policed)
    for (const agent of Object.values(agents)) await agent.waitForLog((e) => e.msg === 'connected', { what: `${agent.name} connected`, timeoutMs: 20_000 })
    const rows: Record<'plain' | 'policed', Row> = {
      plain: { keepAliveUs: [], keepAliveCpuUs: [], newConnUs: [], federateMiBs: [], federateCpuMsPerMiB: [], rssMiB: [] },
      policed: { keepAliveUs: [], keepAliveCpuUs: [], newConnUs: [], federateMiBs: [], federateCpuMsPerMiB: [], rssMiB: [] },
    }
    for (let round = 1; round <= rounds; round++) {
      log(`round ${round}/${rounds}`)
      // Alternate the order so neither side always runs on a warmer machine.
      const order = round % 2 === 1 ? (['plain', 'policed'] as const) : (['policed', 'plain'] as const)
      for (const name of order) {
        const pid = agents[name].child.pid
        if (pid === undefined) throw new Error(`${name} agent has no pid`)
        await measure(name, name === 'plain' ? plainPort : policedPort, pid, { gets, federateBytes }, rows[name])
      }
    }
    const fmt = (n: number, digits = 0): string => n.toFixed(digits)
    const line = (label: string, pick: (row: Row) => number[], digits = 0): string =>
      `| ${label} | ${fmt(median(pick(rows.plain)), digits)} | ${fmt(median(pick(rows.policed)), digits)} | ${fmt(median(pick(rows.policed)) - median(pick(rows.plain)), digits)} |`
    process.stdout.write([
      `node ${process.version}, ${rounds} rounds (median of rounds), ${gets} keep-alive GETs of 2 KB per round, /federate ${federateBytes / MIB} MiB`,
      '',
      '| per agent | plain | --read-only | difference |',
      '|---|---:|---:|---:|',
      line('keep-alive 2 KB GET, p50 latency (µs)', (r) => r.keepAliveUs),
      line('keep-alive 2 KB GET, agent CPU per request (µs)', (r) => r.keepAliveCpuUs),
      line('new connection per 2 KB GET, p50 latency (µs)', (r) => r.newConnUs),
      line('/federate throughput (MiB/s)', (r) => r.federateMiBs),
      line('/federate agent CPU per MiB (ms)', (r) => r.federateCpuMsPerMiB, 2),
      line('agent RSS after /federate (MiB)', (r) => r.rssMiB),
      '',
    ].join('\n'))
  } finally {
    await killAllProcesses()
    upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
