import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createSpokeToken } from '@spokelink/auth'
import { runProcess } from '@spokelink/testkit'
import type { RunningProcess } from '@spokelink/testkit'
import type { IdleAgentsConfig } from '../peers/idle-agents.js'
import { startExitNode } from '../systems/spokelink.js'
import type { SystemContext } from '../systems/system.js'
import { pickFreePorts } from './ports.js'

const IDLE_AGENTS = fileURLToPath(new URL('../peers/idle-agents.ts', import.meta.url))
const CONNECT_CONCURRENCY = 32
const CONNECT_TIMEOUT_MS = 30_000
/** RSS counts as settled when two readings this far apart differ by less than {@link SETTLED_FRACTION}. */
const SETTLE_INTERVAL_MS = 500
const SETTLED_FRACTION = 0.01
const MAX_SETTLE_MS = 5000

/** What one idle-session measurement found. */
export interface IdleSessionsResult {
  sessions: number
  rssBeforeKiB: number
  rssAfterKiB: number
  /** (after − before) / sessions. */
  perSessionKiB: number
  /** How long the helper took to connect every session. */
  connectMs: number
}

/** VmRSS of `pid` in KiB, from /proc. */
export async function readRssKiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  if (match?.[1] === undefined) throw new Error(`/proc/${pid}/status has no VmRSS line`)
  return Number(match[1])
}

/** Reads RSS until it stops moving (or {@link MAX_SETTLE_MS} passes) and returns the last reading. */
async function settledRssKiB (pid: number): Promise<number> {
  let previous = await readRssKiB(pid)
  for (let waited = 0; waited < MAX_SETTLE_MS; waited += SETTLE_INTERVAL_MS) {
    await delay(SETTLE_INTERVAL_MS)
    const current = await readRssKiB(pid)
    if (Math.abs(current - previous) < previous * SETTLED_FRACTION) return current
    previous = current
  }
  return previous
}

/** A spokes file with one spoke per token, each with one data-plane port, like one customer cluster each. */
async function writeIdleSpokes (file: string, count: number): Promise<string[]> {
  const ports = await pickFreePorts(count)
  const tokens: string[] = []
  const spokes = ports.map((port, i) => {
    const { token, id, sha256 } = createSpokeToken()
    tokens.push(token)
    return { name: `idle-${String(i).padStart(4, '0')}`, tokens: [{ id, sha256 }], ports: [{ upstream: 'prometheus', listen: `127.0.0.1:${port}` }] }
  })
  await writeFile(file, JSON.stringify({ spokes }))
  return tokens
}

async function connectIdleAgents (context: SystemContext, server: string, tokens: string[], tls: boolean): Promise<{ helper: RunningProcess, connectMs: number }> {
  const config: IdleAgentsConfig = {
    server,
    tokens,
    concurrency: CONNECT_CONCURRENCY,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    ...(tls ? { caFile: context.tls.caFile } : {}),
  }
  const configFile = join(context.dir, 'idle-agents.json')
  await writeFile(configFile, JSON.stringify(config), { mode: 0o600 })
  const helper = runProcess(process.execPath, ['--import', 'tsx', IDLE_AGENTS, configFile], { name: 'idle agents' })
  const ready = await helper.waitForLog((entry) => typeof entry.connected === 'number', {
    what: `${tokens.length} idle agent sessions`,
    timeoutMs: CONNECT_TIMEOUT_MS + tokens.length * 100,
  })
  return { helper, connectMs: typeof ready.ms === 'number' ? ready.ms : NaN }
}

/**
 * Starts a fresh exit-node child with `sessions` spokes, reads its RSS, connects one idle agent session per spoke
 * from one helper process, reads its RSS again, and returns the difference per session.
 */
export async function measureIdleSessions (context: SystemContext, tls: boolean, sessions: number): Promise<IdleSessionsResult> {
  const spokesFile = join(context.dir, 'idle-spokes.json')
  const tokens = await writeIdleSpokes(spokesFile, sessions)
  const children: RunningProcess[] = []
  try {
    const exitNode = await startExitNode(context, spokesFile, tls, `idle exit-node (${tls ? 'wss' : 'ws'})`)
    children.push(exitNode.process)
    const rssBeforeKiB = await settledRssKiB(exitNode.process.pid)
    const { helper, connectMs } = await connectIdleAgents(context, exitNode.url, tokens, tls)
    children.push(helper)
    const rssAfterKiB = await settledRssKiB(exitNode.process.pid)
    return { sessions, rssBeforeKiB, rssAfterKiB, perSessionKiB: (rssAfterKiB - rssBeforeKiB) / sessions, connectMs }
  } finally {
    for (const child of children.reverse()) await child.kill()
  }
}
