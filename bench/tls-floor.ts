/**
 * `tsx bench/tls-floor.ts [--sockets 1000] [--message-bytes 262144]`: what an idle socket costs a bare Node
 * server (`peers/echo-server.ts`, nothing of spokelink in it), over TCP and over TLS: RSS above the server's
 * reading before any client, per socket, once after the handshake and a first 100-byte message, and once after
 * one `--message-bytes` message on every socket (buffers that grew for it and stayed). Two servers: one that
 * echoes, and one that only receives (one byte back per message), as the exit-node receives the responses.
 * The floor under the exit-node's RSS per wss session (README "Fleet").
 */
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import tls from 'node:tls'
import { parseArgs } from 'node:util'
import { readFile } from 'node:fs/promises'
import { killAllProcesses, readRssKiB, runProcess, writeTlsFixtureFiles } from '@spokelink/testkit'
import type { RunningProcess } from '@spokelink/testkit'
import type { EchoServerConfig } from './peers/echo-server.js'

const ECHO_SERVER = fileURLToPath(new URL('./peers/echo-server.ts', import.meta.url))
const CONCURRENCY = 64

async function settledRssKiB (pid: number): Promise<number> {
  let previous = await readRssKiB(pid)
  for (let i = 0; i < 10; i++) {
    await delay(500)
    const current = await readRssKiB(pid)
    if (Math.abs(current - previous) < previous * 0.005) return current
    previous = current
  }
  return previous
}

interface MemoryUsage { heapUsed: number, external: number }

/** The server's `process.memoryUsage()`: it prints one line per line on its stdin. */
async function readUsage (server: RunningProcess): Promise<MemoryUsage> {
  const seen = server.logs.length
  server.stdin.write('\n')
  const entry = await server.waitForLog((e) => typeof e.usage === 'object' && server.logs.indexOf(e) >= seen, { what: 'memory usage', timeoutMs: 10_000 })
  return entry.usage as MemoryUsage
}

async function sendOnce (socket: net.Socket, bytes: number, mode: EchoServerConfig['mode'], messageBytes: number): Promise<void> {
  // In receive mode the first (100-byte) message is topped up to a whole message, so one byte comes back.
  await echoOnce(socket, mode === 'echo' ? bytes : messageBytes, mode === 'echo' ? bytes : 1)
}

async function echoOnce (socket: net.Socket, bytes: number, expected: number): Promise<void> {
  let received = 0
  const done = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      received += chunk.length
      if (received >= expected) {
        socket.off('data', onData)
        resolve()
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
  socket.write(Buffer.alloc(bytes, 1))
  await done
}

async function measure (useTls: boolean, mode: EchoServerConfig['mode'], sockets: number, messageBytes: number, dir: string, caPem: string | undefined, files: { certFile: string, keyFile: string }, afterFirstBytes = false): Promise<string> {
  const configFile = join(dir, `echo-${useTls ? 'tls' : 'tcp'}-${mode}${afterFirstBytes ? '-after-first-bytes' : ''}.json`)
  await writeFile(configFile, JSON.stringify({ tls: useTls, ...files, mode, messageBytes, afterFirstBytes } satisfies EchoServerConfig))
  const server: RunningProcess = runProcess(process.execPath, ['--import', 'tsx', ECHO_SERVER, configFile], { name: 'echo-server' })
  const { port } = await server.waitForLog((entry) => typeof entry.port === 'number', { what: 'the echo server to listen', timeoutMs: 30_000 })
  const before = await settledRssKiB(server.pid)
  const open: net.Socket[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next++ < sockets) {
      const socket = useTls
        ? tls.connect({ host: '127.0.0.1', port: Number(port), ca: caPem, servername: 'localhost' })
        : net.connect({ host: '127.0.0.1', port: Number(port) })
      await once(socket, useTls ? 'secureConnect' : 'connect')
      await sendOnce(socket, 100, mode, messageBytes)
      open.push(socket)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const idle = await settledRssKiB(server.pid)
  const idleUsage = await readUsage(server)
  for (let i = 0; i < open.length; i += CONCURRENCY) await Promise.all(open.slice(i, i + CONCURRENCY).map(async (s) => { await sendOnce(s, messageBytes, mode, messageBytes) }))
  const afterMessage = await settledRssKiB(server.pid)
  const afterUsage = await readUsage(server)
  for (const socket of open) socket.destroy()
  await server.kill()
  const perSocket = (kib: number): string => ((kib - before) / sockets).toFixed(1)
  const split = (u: MemoryUsage): string => `${(u.heapUsed / 1024 / sockets).toFixed(1)} / ${(u.external / 1024 / sockets).toFixed(1)}`
  return `| ${useTls ? 'TLS 1.3' : 'TCP'}${afterFirstBytes ? ' started after the first bytes (the exit-node)' : ''}, ${mode} | ${sockets} | ${(before / 1024).toFixed(1)} | ${perSocket(idle)} (${split(idleUsage)}) | ${perSocket(afterMessage)} (${split(afterUsage)}) |`
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { sockets: { type: 'string', default: '1000' }, 'message-bytes': { type: 'string', default: '262144' } } })
  const sockets = Number(values.sockets)
  const messageBytes = Number(values['message-bytes'])
  const dir = mkdtempSync(join(tmpdir(), 'spokelink-tls-floor-'))
  try {
    const files = await writeTlsFixtureFiles(dir)
    const caPem = await readFile(files.caFile, 'utf8')
    const rows: string[] = []
    for (const mode of ['receive', 'echo'] as const) {
      rows.push(await measure(false, mode, sockets, messageBytes, dir, undefined, files))
      rows.push(await measure(true, mode, sockets, messageBytes, dir, caPem, files))
      rows.push(await measure(true, mode, sockets, messageBytes, dir, caPem, files, true))
    }
    process.stdout.write([
      `bare Node ${process.version} server (bench/peers/echo-server.ts), clients in the driver process; RSS of the server`,
      '',
      `| transport | sockets | RSS at rest (MiB) | per idle socket after its first message, KiB (heap used / external, whole process ÷ sockets) | per socket after one ${messageBytes.toLocaleString('en-US')}-byte message each, KiB (same) |`,
      '| --- | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
    ].join('\n'))
  } finally {
    await killAllProcesses()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
