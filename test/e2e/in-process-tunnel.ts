import { once } from 'node:events'
import type net from 'node:net'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { onTestFinished } from 'vitest'
import { createAgent } from '@spokelink/agent'
import type { Agent, AgentOptions } from '@spokelink/agent'
import type { SpokesConfig } from '@spokelink/auth'
import { createExitNode } from '@spokelink/exit-node'
import type { ExitNode, ExitNodeOptions } from '@spokelink/exit-node'
import { listenLoopback, startEchoServer } from '@spokelink/testkit'

/** An exit-node running in the test process, closed when the test finishes. */
export interface RunningExitNode {
  exitNode: ExitNode
  registry: Registry
  port: number
  /** The admin listener's port (`/metrics`, `/v1/sd`). */
  adminPort: number
  url: string
}

/** Starts an exit-node with both listeners on 127.0.0.1:0 (short shutdown grace) and closes it when the test finishes; `clock` is the exit-node's injected clock. */
export async function startExitNode (spokes: SpokesConfig, logger: Logger, options: ExitNodeOptions = {}, deps: { clock?: () => Date } = {}): Promise<RunningExitNode> {
  const registry = new Registry()
  const exitNode = createExitNode({ host: '127.0.0.1', port: 0, adminPort: 0, shutdownGraceMs: 500, ...options }, spokes, { logger, registry, ...deps })
  onTestFinished(async () => { await exitNode.close() })
  const { port } = await exitNode.listen()
  return { exitNode, registry, port, adminPort: exitNode.adminAddress().port, url: `ws://127.0.0.1:${port}/connect` }
}

/** Reconnects fast enough for tests, still with full jitter. */
export const FAST_BACKOFF = { initialDelayMs: 50, maxDelayMs: 200 }

/** Creates and starts an agent (fast backoff), closed when the test finishes; with `waitConnected`, resolves once connected (30 s deadline). */
export async function startAgent (options: AgentOptions, logger: Logger, waitConnected = true): Promise<Agent> {
  const agent = createAgent({ agentName: 'test-agent', backoff: FAST_BACKOFF, ...options }, { logger, registry: new Registry() })
  onTestFinished(async () => { await agent.close({ graceMs: 0 }) })
  const connected = once(agent, 'connected', { signal: AbortSignal.timeout(30_000) })
  agent.start()
  if (waitConnected) await connected
  else connected.catch(() => { /* the caller waits for something else */ })
  return agent
}

/** Listens on 127.0.0.1:0 and closes the server when the test finishes. */
export async function listen (server: net.Server): Promise<number> {
  const port = await listenLoopback(server)
  onTestFinished(async () => {
    server.close()
    await once(server, 'close')
  })
  return port
}

/** An echo upstream (testkit's {@link startEchoServer}) closed when the test finishes; resolves to its port. */
export async function echoUpstream (): Promise<number> {
  const echo = await startEchoServer()
  onTestFinished(async () => { await echo.close() })
  return echo.port
}

/** The next `disconnected` of `agent`, as the Error it carries; rejects after `timeoutMs`. */
export async function nextDisconnect (agent: Agent, timeoutMs: number): Promise<Error | undefined> {
  const [err] = await once(agent, 'disconnected', { signal: AbortSignal.timeout(timeoutMs) }) as [Error | undefined]
  return err
}
