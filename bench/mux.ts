/**
 * `pnpm bench:mux`: our yamux (MuxSession) against raw TCP and raw ws on loopback, printed as one
 * markdown table. The serving side (sinks, request/response server, the 50 ms link) runs in a child
 * process, so sender and receiver each get a core as they would on two machines. Not a test: nothing
 * here asserts.
 *
 * `--only link` runs just the two 50 ms link rows (raw TCP, then one mux stream over ws), `--link-runs N`
 * (default 1; with several, the table shows the medians and each pair is printed to stderr) repeats
 * them, alternating the two, for a quick A/B of a mux change on the long link.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { Writable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { fileURLToPath } from 'node:url'
import { WebSocket, WebSocketServer } from 'ws'
import { createMuxSession, createWebSocketDuplex, generateZeroMask } from '@spokelink/protocol'
import type { MuxSession, MuxSessionOptions, MuxStream } from '@spokelink/protocol'
import { createDelayLink } from '@spokelink/testkit'

const MiB = 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 0x5a) // what a proxy reads from a socket at a time
const REPLY = Buffer.alloc(100, 0x61)
const REQUEST = Buffer.alloc(100, 0x71)
const BULK_BYTES = 512 * MiB // per stream-set: 1 × 512 MiB or 16 × 32 MiB
const ROUNDS = 3
const RR_REQUESTS = 2000
const RR_WARMUP = 200
const IDLE_STREAMS = 10_000
const IDLE_SESSIONS = 1000
const LINK_BYTES = 256 * MiB
const LINK_MAX_MS = 15_000
const LINK_ONE_WAY_MS = 25
const MUX: MuxSessionOptions = { maxStreams: 20_000 }
const SERVE_ARG = '--bench-server'

function flagValue (name: string): string | undefined {
  const i = process.argv.indexOf(name)
  return i < 0 ? undefined : process.argv[i + 1]
}
const ONLY = flagValue('--only')
if (ONLY !== undefined && ONLY !== 'link') throw new Error(`bench:mux --only: expected link, got ${ONLY}`)
const LINK_RUNS = Number(flagValue('--link-runs') ?? 1)
if (!Number.isInteger(LINK_RUNS) || LINK_RUNS < 1) throw new Error(`bench:mux --link-runs: expected a positive integer, got ${String(flagValue('--link-runs'))}`)
const WS_OPTIONS = { perMessageDeflate: false, maxPayload: 128 * MiB } as const
// Clients send as the agent does: zero masking key (see generateZeroMask), for raw ws and the mux alike.
const WS_CLIENT_OPTIONS = { ...WS_OPTIONS, generateMask: generateZeroMask } as const

// global.gc without a flag on the command line (pnpm runs plain `tsx bench/mux.ts`).
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function heapAfterGc (): { heap: number, rss: number } {
  for (let i = 0; i < 3; i++) gc()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, rss: m.rss }
}

const noop = (): void => {}

async function listen (server: Server | WebSocketServer): Promise<number> {
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

// --- serving side (child process) -------------------------------------------------------------

interface Ports { tcp: number, ws: number, muxTcp: number, linkTcp: number, linkWs: number }
type ToWorker = { cmd: 'heap' }
type FromWorker = { ports: Ports } | { heap: number }

/** Reads to FIN, then answers 100 bytes and ends: a bulk sink and a request/response server at once. */
function sinkThenReply (s: Socket | MuxStream): void {
  s.on('data', noop)
  s.on('end', () => { s.end(REPLY) })
  s.on('error', noop)
}

function serveMux (session: MuxSession): void {
  session.on('stream', sinkThenReply)
}

async function runServer (): Promise<void> {
  const send = (m: FromWorker): void => {
    if (process.send === undefined) throw new Error('bench server started without an IPC channel')
    process.send(m)
  }
  const tcp = createServer({ noDelay: true, allowHalfOpen: true }, sinkThenReply).listen(0, '127.0.0.1')
  const muxTcp = createServer({ noDelay: true }, (socket) => {
    socket.on('error', noop)
    serveMux(createMuxSession(socket, 'server', MUX))
  }).listen(0, '127.0.0.1')
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...WS_OPTIONS })
  wss.on('connection', (ws, req) => {
    ws.on('error', noop)
    if (req.url === '/mux') {
      serveMux(createMuxSession(createWebSocketDuplex(ws), 'server', MUX))
      return
    }
    // Raw ws sink: binary messages are the payload, a text message asks for the reply.
    ws.on('message', (_data, isBinary) => {
      if (!isBinary) ws.send(REPLY)
    })
  })
  const [tcpPort, muxTcpPort, wsPort] = await Promise.all([listen(tcp), listen(muxTcp), listen(wss)])
  const ports = { tcp: tcpPort, muxTcp: muxTcpPort, ws: wsPort }
  const linkTcp = await createDelayLink({ target: { host: '127.0.0.1', port: ports.tcp }, oneWayDelayMs: LINK_ONE_WAY_MS })
  const linkWs = await createDelayLink({ target: { host: '127.0.0.1', port: ports.ws }, oneWayDelayMs: LINK_ONE_WAY_MS })
  process.on('message', (msg: ToWorker) => {
    if (msg.cmd === 'heap') send({ heap: heapAfterGc().heap })
  })
  process.on('disconnect', () => { process.exit(0) })
  send({ ports: { ...ports, linkTcp: linkTcp.port, linkWs: linkWs.port } })
}

// --- client side (main thread) ----------------------------------------------------------------

async function pump (w: Writable, bytes: number, deadline = Infinity): Promise<number> {
  let sent = 0
  while (sent < bytes && performance.now() < deadline) {
    sent += CHUNK.length
    if (!w.write(CHUNK)) await once(w, 'drain')
  }
  return sent
}

/** Resolves once the peer has ended its side (after its 100-byte reply). */
async function replied (s: Socket | MuxStream): Promise<void> {
  s.on('data', noop)
  await once(s, 'end')
}

async function dialTcp (port: number): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true })
  await once(socket, 'connect')
  return socket
}

async function dialWs (port: number, path: string): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, WS_CLIENT_OPTIONS)
  await once(ws, 'open')
  return ws
}

async function muxOverWs (port: number): Promise<MuxSession> {
  // The duplex must be attached before 'open': the server's first frames can arrive with the upgrade.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/mux`, WS_CLIENT_OPTIONS)
  const session = createMuxSession(createWebSocketDuplex(ws), 'client', MUX)
  await session.ping()
  return session
}

async function muxOverTcp (port: number): Promise<MuxSession> {
  const session = createMuxSession(await dialTcp(port), 'client', MUX)
  await session.ping()
  return session
}

async function timed (fn: () => Promise<void>): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

async function bulkTcp (port: number, n: number): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: n }, async () => dialTcp(port)))
  return timed(async () => {
    await Promise.all(sockets.map(async (s) => {
      const done = replied(s)
      await pump(s, BULK_BYTES / n)
      s.end()
      await done
    }))
  })
}

/** ws.send with at most 4 MiB awaiting the socket, woken by send callbacks. */
async function pumpWs (ws: WebSocket, bytes: number): Promise<void> {
  const highWater = 4 * MiB
  let inFlight = 0
  let wake: (() => void) | undefined
  const sent = (): void => {
    inFlight -= CHUNK.length
    if (wake !== undefined && inFlight <= highWater / 2) {
      const w = wake
      wake = undefined
      w()
    }
  }
  for (let n = 0; n < bytes; n += CHUNK.length) {
    inFlight += CHUNK.length
    ws.send(CHUNK, { binary: true }, sent)
    if (inFlight >= highWater) await new Promise<void>((resolve) => { wake = resolve })
  }
}

async function bulkWs (port: number, n: number): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: n }, async () => dialWs(port, '/raw')))
  const ms = await timed(async () => {
    await Promise.all(sockets.map(async (ws) => {
      const done = once(ws, 'message')
      await pumpWs(ws, BULK_BYTES / n)
      ws.send('end')
      await done
    }))
  })
  for (const ws of sockets) ws.close()
  return ms
}

async function bulkMux (session: MuxSession, n: number): Promise<number> {
  return timed(async () => {
    await Promise.all(Array.from({ length: n }, async () => {
      const s = session.openStream()
      const done = replied(s)
      await pump(s, BULK_BYTES / n)
      s.end()
      await done
    }))
  })
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
}

async function mbps (run: () => Promise<number>, bytes = BULK_BYTES): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < ROUNDS; i++) times.push(await run())
  return bytes / 1e6 / (median(times) / 1000)
}

async function requestResponse (oneRequest: () => Promise<void>): Promise<{ p50: number, p99: number }> {
  for (let i = 0; i < RR_WARMUP; i++) await oneRequest()
  const ms: number[] = []
  for (let i = 0; i < RR_REQUESTS; i++) ms.push(await timed(oneRequest))
  return { p50: percentile(ms, 0.5), p99: percentile(ms, 0.99) }
}

function progress (what: string): void {
  process.stderr.write(`bench:mux ${what}\n`)
}

/** Everything but the link rows: idle memory, bulk and request/response; returns their table rows. */
async function memoryBulkAndRequests (ports: Ports, workerHeap: () => Promise<number>): Promise<string[][]> {
  // Memory first, before bulk transfers fragment the heap.
  progress(`idle: ${IDLE_STREAMS} streams`)
  const idleSession = await muxOverWs(ports.ws)
  const s0 = heapAfterGc()
  const w0 = await workerHeap()
  const idle = Array.from({ length: IDLE_STREAMS }, () => idleSession.openStream())
  await idleSession.ping() // answered after every SYN: the server has accepted them all
  const s1 = heapAfterGc()
  const w1 = await workerHeap()
  for (const s of idle) s.destroy()
  idleSession.abort()

  progress(`idle: ${IDLE_SESSIONS} sessions`)
  const t0 = heapAfterGc()
  const v0 = await workerHeap()
  const sessions = await Promise.all(Array.from({ length: IDLE_SESSIONS }, async () => muxOverTcp(ports.muxTcp)))
  const t1 = heapAfterGc()
  const v1 = await workerHeap()
  for (const s of sessions) s.abort()

  progress('bulk')
  const rawTcp1 = await mbps(async () => bulkTcp(ports.tcp, 1))
  const rawTcp16 = await mbps(async () => bulkTcp(ports.tcp, 16))
  const rawWs1 = await mbps(async () => bulkWs(ports.ws, 1))
  const rawWs16 = await mbps(async () => bulkWs(ports.ws, 16))
  const muxTcpSession = await muxOverTcp(ports.muxTcp)
  const muxTcp1 = await mbps(async () => bulkMux(muxTcpSession, 1))
  const muxTcp16 = await mbps(async () => bulkMux(muxTcpSession, 16))
  muxTcpSession.abort()
  const muxWsSession = await muxOverWs(ports.ws)
  const muxWs1 = await mbps(async () => bulkMux(muxWsSession, 1))
  const muxWs16 = await mbps(async () => bulkMux(muxWsSession, 16))

  progress('request/response')
  const rrMuxWs = await requestResponse(async () => {
    const s = muxWsSession.openStream()
    const done = replied(s)
    s.end(REQUEST)
    await done
  })
  muxWsSession.abort()
  const rrTcp = await requestResponse(async () => {
    const s = await dialTcp(ports.tcp)
    const done = replied(s)
    s.end(REQUEST)
    await done
    s.destroy()
  })

  const f0 = (n: number): string => n.toFixed(0)
  const f2 = (n: number): string => n.toFixed(2)
  const kib = (bytes: number, n: number): string => (bytes / n / 1024).toFixed(2)
  const ratio = (a: number, b: number): string => `${f2(a / b)}×`
  return [
    ['raw TCP, 1 connection', `${f0(rawTcp1)} MB/s`, '', '', ''],
    ['raw TCP, 16 connections', `${f0(rawTcp16)} MB/s`, '', '', ''],
    ['raw ws (bufferutil, no deflate), 1 connection', `${f0(rawWs1)} MB/s`, '', '', ''],
    ['raw ws, 16 connections', `${f0(rawWs16)} MB/s`, '', '', ''],
    ['mux over TCP, 1 stream', `${f0(muxTcp1)} MB/s`, `raw TCP ${f0(rawTcp1)}`, ratio(muxTcp1, rawTcp1), ''],
    ['mux over TCP, 16 streams', `${f0(muxTcp16)} MB/s`, `raw TCP ×16 ${f0(rawTcp16)}`, ratio(muxTcp16, rawTcp16), ''],
    ['mux over ws, 1 stream', `${f0(muxWs1)} MB/s`, `raw ws ${f0(rawWs1)}`, ratio(muxWs1, rawWs1), '≥ 600 MB/s and ≥ 0.5× raw ws'],
    ['mux over ws, 16 streams', `${f0(muxWs16)} MB/s`, `raw ws ×16 ${f0(rawWs16)}`, ratio(muxWs16, rawWs16), '≥ 600 MB/s'],
    ['req/resp 100 B ⇄ 100 B, new stream each, mux over ws', `p50 ${f2(rrMuxWs.p50)} ms, p99 ${f2(rrMuxWs.p99)} ms`, `new TCP conn p50 ${f2(rrTcp.p50)}, p99 ${f2(rrTcp.p99)}`, ratio(rrMuxWs.p50, rrTcp.p50), ''],
    [`idle stream (${IDLE_STREAMS} on one ws session), heap: opener / acceptor`, `${kib(s1.heap - s0.heap, IDLE_STREAMS)} / ${kib(w1 - w0, IDLE_STREAMS)} KiB`, '', '', '≤ 16 KiB'],
    ['idle stream, RSS (opener process)', `${kib(s1.rss - s0.rss, IDLE_STREAMS)} KiB`, '', '', ''],
    [`idle session (${IDLE_SESSIONS} over loopback TCP), heap: client / server`, `${kib(t1.heap - t0.heap, IDLE_SESSIONS)} / ${kib(v1 - v0, IDLE_SESSIONS)} KiB`, '', '', ''],
    ['idle session, RSS (client process, with its sockets)', `${kib(t1.rss - t0.rss, IDLE_SESSIONS)} KiB`, '', '', ''],
  ]
}

async function main (): Promise<void> {
  // fork() passes on process.execArgv, which carries tsx's loader.
  const worker = fork(fileURLToPath(import.meta.url), [SERVE_ARG], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const messages: FromWorker[] = []
  let onMessage: (() => void) | undefined
  worker.on('message', (m: FromWorker) => {
    messages.push(m)
    onMessage?.()
  })
  const next = async (): Promise<FromWorker> => {
    while (messages.length === 0) await new Promise<void>((resolve) => { onMessage = resolve })
    const m = messages.shift()
    if (m === undefined) throw new Error('unreachable')
    return m
  }
  const workerHeap = async (): Promise<number> => {
    worker.send({ cmd: 'heap' } satisfies ToWorker)
    const m = await next()
    if (!('heap' in m)) throw new Error('bench server answered out of turn')
    return m.heap
  }
  const first = await next()
  if (!('ports' in first)) throw new Error('bench server did not report its ports')
  const { ports } = first

  const rest = ONLY === 'link' ? [] : await memoryBulkAndRequests(ports, workerHeap)

  progress(`50 ms RTT link (${LINK_BYTES / MiB} MiB or ${LINK_MAX_MS / 1000} s each)`)
  const linkRun = async (w: Writable, onEnd: Promise<void>): Promise<number> => {
    let bytes = 0
    const ms = await timed(async () => {
      bytes = await pump(w, LINK_BYTES, performance.now() + LINK_MAX_MS)
      w.end()
      await onEnd
    })
    return bytes / 1e6 / (ms / 1000)
  }
  const linkTcps: number[] = []
  const linkMuxes: number[] = []
  let linkRtt = NaN
  let stalls = 0
  for (let run = 1; run <= LINK_RUNS; run++) {
    const linkSocket = await dialTcp(ports.linkTcp)
    const linkTcp = await linkRun(linkSocket, replied(linkSocket))
    linkSocket.destroy()
    const linkSession = await muxOverWs(ports.linkWs)
    linkRtt = linkSession.stats.rttMs ?? NaN
    const linkStream = linkSession.openStream()
    const linkMux = await linkRun(linkStream, replied(linkStream))
    stalls = linkSession.stats.windowStalls
    linkSession.abort()
    linkTcps.push(linkTcp)
    linkMuxes.push(linkMux)
    if (LINK_RUNS > 1) progress(`link run ${run}: raw TCP ${linkTcp.toFixed(0)} MB/s, mux ${linkMux.toFixed(0)} MB/s (${(linkMux / linkTcp).toFixed(2)}×, rtt ${linkRtt.toFixed(0)} ms, ${stalls} window stalls)`)
  }
  const linkTcp = median(linkTcps)
  const linkMux = median(linkMuxes)
  const linkRatio = median(linkMuxes.map((m, i) => m / (linkTcps[i] ?? NaN)))
  const f0 = (n: number): string => n.toFixed(0)
  const f2 = (n: number): string => n.toFixed(2)
  const linkOf = LINK_RUNS > 1 ? `, median of ${LINK_RUNS} alternating runs` : ''
  const rows: string[][] = [
    ...rest,
    [`raw TCP, 1 connection, ${LINK_ONE_WAY_MS * 2} ms RTT link${linkOf}`, `${f0(linkTcp)} MB/s`, '', '', ''],
    [`mux over ws, 1 stream, ${LINK_ONE_WAY_MS * 2} ms RTT link (rtt ${f0(linkRtt)} ms, ${stalls} window stalls)${linkOf}`, `${f0(linkMux)} MB/s`, `raw TCP on link ${f0(linkTcp)}`, `${f2(linkRatio)}×`, '≥ 0.8× raw TCP on the link (issue 12)'],
  ]
  const header = ['benchmark', 'result', 'baseline', 'ratio', 'target (issue 2 unless named)']
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  process.stdout.write([
    `Loopback, node ${process.version}, ${cpus().length} × ${cpu}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end; MB = 10^6 bytes; ${ONLY === 'link' ? '' : `bulk = ${BULK_BYTES / MiB} MiB per stream-set in 64 KiB writes, median of ${ROUNDS}; req/resp sequential, ${RR_REQUESTS} requests; `}link: ${LINK_BYTES / MiB} MiB (or ${LINK_MAX_MS / 1000} s) per run in 64 KiB writes.`,
    '',
    line(header),
    line(header.map(() => '---')),
    ...rows.map(line),
    '',
  ].join('\n'))
  worker.kill()
}

if (!process.argv.includes(SERVE_ARG)) {
  main().then(() => { process.exit(0) }, (err: unknown) => {
    process.stderr.write(`bench:mux failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
} else {
  runServer().catch((err: unknown) => {
    process.stderr.write(`bench:mux server failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
