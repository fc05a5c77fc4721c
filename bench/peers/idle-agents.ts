/**
 * Opens many idle agent sessions to one exit-node from a single process, so the exit-node's memory per idle
 * session can be measured without a thousand agent processes. Reads `{ server, caFile?, tokens, concurrency }`
 * from the JSON file named by argv[2], starts one in-process agent per token, prints one JSON line
 * `{"connected":n,"ms":…}` once every agent is connected, and stays until stdin closes or a signal arrives.
 */
import { readFile } from 'node:fs/promises'
import { once } from 'node:events'
import { createAgent } from '@spokelink/agent'
import type { Agent } from '@spokelink/agent'
import pino from 'pino'
import { Registry } from 'prom-client'

type AgentDeps = Parameters<typeof createAgent>[1]

export interface IdleAgentsConfig {
  /** ws(s)://host:port/connect */
  server: string
  caFile?: string
  /** One agent (and so one session) per token. */
  tokens: string[]
  /** Agents connecting at once. */
  concurrency: number
  /** Give up when one agent has not connected after this long. */
  connectTimeoutMs: number
}

function loadDeps (): () => AgentDeps {
  const logger = pino({ level: 'warn' })
  // One registry per agent: each agent registers the same metric names.
  return () => ({ logger, registry: new Registry() })
}

async function connectOne (agent: Agent, timeoutMs: number): Promise<void> {
  agent.start()
  await once(agent, 'connected', { signal: AbortSignal.timeout(timeoutMs) })
}

async function main (): Promise<void> {
  const path = process.argv[2]
  if (path === undefined) throw new Error('usage: idle-agents.ts <config.json>')
  const config = JSON.parse(await readFile(path, 'utf8')) as IdleAgentsConfig
  const caPem = config.caFile === undefined ? undefined : await readFile(config.caFile, 'utf8')
  const deps = loadDeps()
  const agents: Agent[] = []
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < config.tokens.length) {
      const token = config.tokens[next++]
      if (token === undefined) return
      // The upstream is never dialed: the sessions stay idle.
      const agent = createAgent({ server: config.server, token, caPem, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: 9 }] }, deps())
      agents.push(agent)
      await connectOne(agent, config.connectTimeoutMs)
    }
  }
  await Promise.all(Array.from({ length: config.concurrency }, worker))
  process.stdout.write(JSON.stringify({ connected: agents.length, ms: Math.round(performance.now() - started) }) + '\n')
  const stop = (): void => { process.exit(0) }
  process.stdin.on('end', stop).on('close', stop).resume()
  process.on('SIGTERM', stop).on('SIGINT', stop)
}

await main()
