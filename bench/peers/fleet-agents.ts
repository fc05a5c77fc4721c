/**
 * One process of the fleet bench's agents: an in-process HTTP upstream that answers `/federate` with
 * `responseBytes` bytes, and one `@spokelink/agent` per token, each a real session to the exit-node whose
 * `prometheus` upstream is that server. Reads `FleetAgentsConfig` from the JSON file named by argv[2].
 *
 * stdout, one JSON line each: `{"upstreamPort":…}` once the upstream listens, `{"connected":n,"ms":…}` once every
 * agent has connected the first time, then every `tickMs` `{"t":<epoch ms>,"attempts":a,"connected":c,…}`: the
 * upgrade attempts (state `connecting`) since the previous tick and the agents connected now, and since the previous
 * tick: sessions lost (`lost`), first attempts after a lost session (`first`), sessions established (`back`). Nothing
 * is kept per tick, so the process's memory does not grow with the run's length. Stays until stdin closes or a
 * signal arrives.
 */
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createAgent } from '@spokelink/agent'
import type { Agent, BackoffOptions } from '@spokelink/agent'
import { listenLoopback } from '@spokelink/testkit'
import pino from 'pino'
import { Registry } from 'prom-client'

export interface FleetAgentsConfig {
  /** ws(s)://host:port/connect */
  server: string
  caFile?: string
  /** One agent (one spoke, one session) per token. */
  tokens: string[]
  /** Body size of `/federate`. */
  responseBytes: number
  /** Agents connecting at once on the first start. */
  concurrency: number
  /** Give up when one agent has not connected after this long on the first start. */
  connectTimeoutMs: number
  tickMs: number
  /** Agent option `backoff` (the restart ceiling and window), so one build can be measured with either behaviour. */
  backoff?: BackoffOptions
}

function serveFederate (body: Buffer): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.url?.startsWith('/federate') !== true) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': body.length })
    res.end(body)
  }
}

async function main (): Promise<void> {
  const path = process.argv[2]
  if (path === undefined) throw new Error('usage: fleet-agents.ts <config.json>')
  const config = JSON.parse(await readFile(path, 'utf8')) as FleetAgentsConfig
  const caPem = config.caFile === undefined ? undefined : await readFile(config.caFile, 'utf8')
  // One shared body: the upstream's memory does not grow with the number of scrapes.
  const body = Buffer.alloc(config.responseBytes, 'metric_line_padding 1\n')
  const upstream = createServer({ keepAliveTimeout: 1000 }, serveFederate(body))
  upstream.on('connection', (socket) => { socket.on('error', () => {}) })
  const upstreamPort = await listenLoopback(upstream)
  process.stdout.write(JSON.stringify({ upstreamPort }) + '\n')

  const logger = pino({ level: 'error' })
  const agents: Agent[] = []
  let attempts = 0
  let connected = 0
  let lost = 0
  let first = 0
  let back = 0
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < config.tokens.length) {
      const token = config.tokens[next++]
      if (token === undefined) return
      // One registry per agent: each agent registers the same metric names.
      const agent = createAgent({ server: config.server, token, caPem, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }], ...(config.backoff === undefined ? {} : { backoff: config.backoff }) }, { logger, registry: new Registry() })
      let isConnected = false
      /** Lost a session and not tried again yet. */
      let sinceLost = false
      agent.on('state', (state) => {
        if (state === 'connecting') {
          attempts++
          if (sinceLost) first++
          sinceLost = false
        }
        const now = state === 'connected'
        if (now !== isConnected) {
          connected += now ? 1 : -1
          if (now) back++
          else {
            lost++
            sinceLost = true
          }
        }
        isConnected = now
      })
      agents.push(agent)
      agent.start()
      await once(agent, 'connected', { signal: AbortSignal.timeout(config.connectTimeoutMs) })
    }
  }
  await Promise.all(Array.from({ length: config.concurrency }, worker))
  process.stdout.write(JSON.stringify({ connected: agents.length, ms: Math.round(performance.now() - started) }) + '\n')
  // How late this process's event loop ran since the previous tick: a starved load generator shows here.
  const loopDelay = monitorEventLoopDelay({ resolution: 20 })
  loopDelay.enable()
  setInterval(() => {
    process.stdout.write(JSON.stringify({ t: Date.now(), attempts, connected, lost, first, back, loopDelayMaxMs: Math.round(loopDelay.max / 1e6) }) + '\n')
    loopDelay.reset()
    attempts = 0
    lost = 0
    first = 0
    back = 0
  }, config.tickMs)
  const stop = (): void => { process.exit(0) }
  process.stdin.on('end', stop).on('close', stop).resume()
  process.on('SIGTERM', stop).on('SIGINT', stop)
}

await main()
