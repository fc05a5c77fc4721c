/**
 * `pnpm bench:front-door`: what idle and slow unauthenticated connections cost the exit-node's control port.
 * Starts `spokelink server` as a child, opens `--connections` idle TCP connections (spread over `--sources`
 * loopback addresses 127.0.0.2…) and `--slowloris` connections that send one header byte every 500 ms, then
 * reads the child's RSS and how many connections it still holds each second until it holds none (or
 * `--watch-ms` passes). Not a test: nothing here asserts.
 *
 *   tsx bench/front-door.ts [--tls] [--connections 2000] [--slowloris 200] [--sources 20] [--bin PATH] [-- server flags…]
 *
 * `--bin` runs another build (e.g. a worktree of an older commit) for a before/after comparison.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { runProcess, spokelinkBin, writeTlsFixtureFiles } from '@spokelink/testkit'
import { readRssKiB } from './lib/idle-sessions.js'
import { pickFreePorts } from './lib/ports.js'

const CONNECT_BATCH = 200
const SLOWLORIS_BYTE_INTERVAL_MS = 500
const SAMPLE_INTERVAL_MS = 1000

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tls: { type: 'boolean', default: false },
    connections: { type: 'string', default: '2000' },
    slowloris: { type: 'string', default: '200' },
    sources: { type: 'string', default: '20' },
    bin: { type: 'string' },
    'watch-ms': { type: 'string', default: '40000' },
  },
})
const connections = Number(values.connections)
const slowloris = Number(values.slowloris)
const sources = Number(values.sources)
const watchMs = Number(values['watch-ms'])
const bin = values.bin ?? spokelinkBin()

/** Source address of the i-th connection: 127.0.0.2 … 127.0.0.(1 + sources). */
function sourceOf (i: number): string {
  return `127.0.0.${2 + (i % sources)}`
}

interface Held {
  open: number
  refusedAtOnce: number
}

/** Opens `count` connections; `onConnect` may start writing. Counts those the server closed within 50 ms of connecting. */
async function openConnections (port: number, count: number, offset: number, held: Held, onConnect: (socket: net.Socket) => void): Promise<net.Socket[]> {
  const sockets: net.Socket[] = []
  for (let start = 0; start < count; start += CONNECT_BATCH) {
    await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, count - start) }, async (_, j) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: sourceOf(offset + start + j) })
      sockets.push(socket)
      socket.on('error', () => { /* a reset is one way the server drops us */ })
      await new Promise<void>((resolve) => {
        socket.once('connect', () => {
          held.open++
          const connectedAt = performance.now()
          socket.once('close', () => {
            held.open--
            if (performance.now() - connectedAt < 50) held.refusedAtOnce++
          })
          onConnect(socket)
          resolve()
        })
        socket.once('close', () => { resolve() })
      })
    }))
  }
  return sockets
}

async function main (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'spokelink-front-door-'))
  try {
    const [dataPort] = await pickFreePorts(1)
    const spokesFile = join(dir, 'spokes.json')
    await writeFile(spokesFile, JSON.stringify({ spokes: [{ name: 'bench', tokens: [], ports: [{ upstream: 'prometheus', listen: `127.0.0.1:${String(dataPort)}` }] }] }))
    const tlsArgs: string[] = []
    if (values.tls) {
      const tls = await writeTlsFixtureFiles(dir)
      tlsArgs.push('--tls-cert', tls.certFile, '--tls-key', tls.keyFile)
    }
    const server = runProcess(process.execPath, [bin, 'server', '--listen', '127.0.0.1:0', '--spokes', spokesFile, ...tlsArgs, ...positionals], { name: 'exit-node' })
    try {
      const listening = await server.waitForLog((entry) => entry.msg === 'listening', { what: 'exit-node listening', timeoutMs: 20_000 })
      const port = Number(listening.port)
      await delay(1000)
      const rssBefore = await readRssKiB(server.pid)
      const held: Held = { open: 0, refusedAtOnce: 0 }
      const started = performance.now()
      const idle = await openConnections(port, connections, 0, held, () => {})
      const slow = await openConnections(port, slowloris, connections, held, (socket) => {
        socket.write('GET /connect HTTP/1.1\r\nHost: x\r\nX-Slow: ')
        const timer = setInterval(() => { socket.write('a') }, SLOWLORIS_BYTE_INTERVAL_MS)
        socket.once('close', () => { clearInterval(timer) })
      })
      const samples: Array<{ s: number, held: number, rssKiB: number }> = []
      let maxRss = 0
      let allClosedAtS: number | undefined
      while (performance.now() - started < watchMs) {
        await delay(SAMPLE_INTERVAL_MS)
        const rssKiB = await readRssKiB(server.pid)
        maxRss = Math.max(maxRss, rssKiB)
        const s = Math.round((performance.now() - started) / 100) / 10
        samples.push({ s, held: held.open, rssKiB })
        if (held.open === 0) { allClosedAtS = s; break }
      }
      const peakHeld = samples[0]?.held ?? 0
      const rssAtPeak = samples[0]?.rssKiB ?? rssBefore
      const lines = [
        `exit-node: ${bin === spokelinkBin() ? 'this build' : bin}${values.tls ? ', wss' : ', ws'}${positionals.length > 0 ? `, flags: ${positionals.join(' ')}` : ''}`,
        `offered: ${connections} idle + ${slowloris} slowloris connections from ${sources} source addresses`,
        `held 1 s after the last connect: ${peakHeld} (closed before then: ${connections + slowloris - peakHeld}, of which within 50 ms of connecting as seen by this client: ${held.refusedAtOnce})`,
        `RSS before: ${(rssBefore / 1024).toFixed(1)} MiB, 1 s after: ${(rssAtPeak / 1024).toFixed(1)} MiB (+${((rssAtPeak - rssBefore) / 1024).toFixed(1)} MiB), max: ${(maxRss / 1024).toFixed(1)} MiB` +
          `; growth ÷ held connections: ${peakHeld > 0 ? ((rssAtPeak - rssBefore) / peakHeld).toFixed(1) : 'n/a'} KiB`,
        allClosedAtS === undefined ? `still held after ${watchMs / 1000} s: ${held.open}` : `all closed by the exit-node after ${allClosedAtS} s`,
        `held over time (s: held): ${samples.map((x) => `${x.s}: ${x.held}`).join(', ')}`,
      ]
      process.stdout.write(`${lines.join('\n')}\n`)
      for (const socket of [...idle, ...slow]) socket.destroy()
    } finally {
      await server.kill()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
