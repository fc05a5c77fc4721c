import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdir, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { createMuxSession } from '@spokelink/protocol'
import type { MuxSession, MuxSessionOptions, MuxStream } from '@spokelink/protocol'
import { listenLoopback, runProcess } from '@spokelink/testkit'
import type { LogEntry, RunningProcess } from '@spokelink/testkit'

/** Where `go build` runs (the Go module root) and where the binary lands (gitignored). */
export const INTEROP_DIR = fileURLToPath(new URL('.', import.meta.url))
export const YAMUX_PEER_BIN = fileURLToPath(new URL('./bin/yamux-peer', import.meta.url))
const BUILD_TIMEOUT_MS = 280_000

async function mtimeMs (path: string): Promise<number> {
  try {
    return (await stat(path)).mtimeMs
  } catch {
    return -1 // missing: always older than the sources
  }
}

/**
 * Builds test/interop/yamux-peer with the Go toolchain unless the binary is newer than every source.
 * The first build downloads github.com/hashicorp/yamux through the module proxy into the usual
 * module cache (GOPATH/GOMODCACHE are left as the environment has them).
 */
export async function buildYamuxPeer (): Promise<string> {
  const peerDir = fileURLToPath(new URL('./yamux-peer/', import.meta.url))
  const sources = [
    ...(await readdir(peerDir)).filter((f) => f.endsWith('.go')).map((f) => peerDir + f),
    INTEROP_DIR + 'go.mod',
    INTEROP_DIR + 'go.sum',
  ]
  const newestSource = Math.max(...await Promise.all(sources.map(mtimeMs)))
  if (await mtimeMs(YAMUX_PEER_BIN) > newestSource) return YAMUX_PEER_BIN

  const child = spawn('go', ['build', '-o', YAMUX_PEER_BIN, './yamux-peer'], {
    cwd: INTEROP_DIR,
    env: { ...process.env, GOFLAGS: '-mod=mod -buildvcs=false' },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: BUILD_TIMEOUT_MS,
  })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { output += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { output += s })
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  if (code !== 0) {
    throw new Error(`go build of test/interop/yamux-peer failed (code ${String(code)}, signal ${String(signal)}); is Go on PATH and the module proxy reachable?\n${output}`)
  }
  return YAMUX_PEER_BIN
}

/** The Go peer's yamux role; ours is the other one. */
export type GoRole = 'client' | 'server'
/** Which side opens a scenario's stream(s). */
export type Opener = 'go' | 'node'

export interface InteropCaseOptions {
  role: GoRole
  scenario: string
  opener?: Opener
  /** Extra flags for the Go peer. */
  args?: string[]
  mux?: MuxSessionOptions
}

/** One Go peer process and our session on the TCP connection it dialed. */
export interface InteropCase {
  readonly session: MuxSession
  readonly peer: RunningProcess
  /** Every stream we opened or accepted; each has an 'error' listener that records into `streamErrors`. */
  readonly streamErrors: Map<MuxStream, unknown>
  /** Our stream for the scenario: opened here (opener node) or the next one the Go peer opened. */
  stream: () => Promise<MuxStream>
  /** The next JSON event named `event` from the Go peer; rejects at once if the peer reports an error or exits. */
  event: (event: string, timeoutMs?: number) => Promise<LogEntry>
  /** Writes one line to the Go peer's stdin (its sync points). */
  send: (line: string) => void
  /** Lets the Go peer exit and checks that it exited 0. */
  finish: () => Promise<void>
}

/** Starts a Go peer for one scenario over a fresh loopback TCP connection. */
export async function startInteropCase (bin: string, options: InteropCaseOptions): Promise<InteropCase> {
  const server: Server = createServer({ noDelay: true })
  const port = await listenLoopback(server)
  const accepted = new Promise<Socket>((resolve) => { server.once('connection', resolve) })
  const args = ['-connect', `127.0.0.1:${port}`, '-role', options.role, '-scenario', options.scenario, '-opener', options.opener ?? 'go', ...options.args ?? []]
  const peer = runProcess(bin, args, { name: `yamux-peer ${options.role} ${options.scenario}` })
  const socket = await accepted
  server.close()
  socket.setNoDelay(true)
  const session = createMuxSession(socket, options.role === 'client' ? 'server' : 'client', options.mux)

  const streamErrors = new Map<MuxStream, unknown>()
  const track = (stream: MuxStream): MuxStream => {
    streamErrors.set(stream, undefined)
    stream.on('error', (err: unknown) => { streamErrors.set(stream, err) })
    return stream
  }
  const inbound: MuxStream[] = []
  const waiters: Array<(s: MuxStream) => void> = []
  session.on('stream', (stream: MuxStream) => {
    track(stream)
    const waiter = waiters.shift()
    if (waiter !== undefined) waiter(stream)
    else inbound.push(stream)
  })

  const seen = new Set<LogEntry>()
  const event = async (name: string, timeoutMs = 60_000): Promise<LogEntry> => {
    const entry = await peer.waitForLog(
      (e) => !seen.has(e) && (e.event === name || e.event === 'error'),
      { timeoutMs, what: `the Go peer's "${name}" event` }
    )
    seen.add(entry)
    if (entry.event === 'error') throw new Error(`Go peer failed: ${String(entry.error)}\n${peer.tail(20)}`)
    return entry
  }
  await event('ready', 30_000)

  return {
    session,
    peer,
    streamErrors,
    stream: async () => {
      if (options.opener === 'node') return track(session.openStream())
      const ready = inbound.shift()
      if (ready !== undefined) return ready
      return new Promise<MuxStream>((resolve) => { waiters.push(resolve) })
    },
    event,
    send: (line) => { peer.stdin.write(line + '\n') },
    finish: async () => {
      peer.stdin.write('exit\n')
      await event('done', 30_000)
      const exit = await peer.waitForExit({ timeoutMs: 30_000 })
      if (exit.code !== 0) throw new Error(`Go peer exited with ${String(exit.code ?? exit.signal)}\n${peer.tail(20)}`)
      await session.close({ graceMs: 1000 })
    },
  }
}
