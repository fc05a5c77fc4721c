import net from 'node:net'
import type { Logger } from 'pino'
import { DATA_STREAM_DEFAULTS, ProtocolError, isUpstreamName, openHubStream, waitForFirstBytes } from '@spokelink/protocol'
import type { MuxSession, MuxStream } from '@spokelink/protocol'
import { AgentError } from './errors.js'
import type { AgentMetrics } from './metrics.js'

/** A `--hub-service NAME=HOST:PORT`: the agent listens on `host:port` and carries each connection to hub service `name`. */
export interface HubServiceListen {
  name: string
  host: string
  port: number
}

/** The live session as the hub-service listeners see it. */
export interface HubSession {
  mux: MuxSession
  /** The exit-node's welcome had `hubServices`: it serves hub streams. Older exit-nodes reset them, so none is opened. */
  supported: boolean
}

/** Limits of {@link HubServiceListeners}. */
export interface HubServiceListenerOptions {
  /** Local connections per hub service at once; more are reset at accept. @default 64 */
  maxConnectionsPerHubService?: number
  /** How long the exit-node may take to dial the hub service and answer. @default 10000 */
  statusTimeoutMs?: number
  /** How long a new connection waits for its client's first bytes, so they ride with the stream's SYN. @default 2 */
  firstBytesHoldMs?: number
  /** At most one warn line per hub service per this interval about refused connections; the rest are counted. @default 10000 */
  refusalLogIntervalMs?: number
}

/** Defaults of {@link HubServiceListenerOptions}. */
export const HUB_SERVICE_LISTENER_DEFAULTS = {
  // The exit-node's default per-spoke cap: one agent alone can use all of it.
  maxConnectionsPerHubService: 64,
  statusTimeoutMs: 10_000,
  firstBytesHoldMs: DATA_STREAM_DEFAULTS.firstBytesHoldMs,
  refusalLogIntervalMs: 10_000,
} as const satisfies Required<HubServiceListenerOptions>

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/

/**
 * Parses `NAME=HOST:PORT` (`remote-write=127.0.0.1:9201`); port 0 picks a free one.
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION naming the bad part
 */
export function parseHubServiceSpec (spec: string): HubServiceListen {
  const eq = spec.indexOf('=')
  const name = eq < 0 ? '' : spec.slice(0, eq)
  if (!isUpstreamName(name)) {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--hub-service "${spec.slice(0, 80)}": expected NAME=HOST:PORT with NAME like "remote-write" (lowercase letters, digits, - and _)`)
  }
  const match = HOST_PORT.exec(spec.slice(eq + 1))
  const host = match?.[1]
  const port = Number(match?.[2])
  if (host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--hub-service "${spec.slice(0, 80)}": expected NAME=HOST:PORT to listen on, with a port from 0 to 65535`)
  }
  return { name, host: host.replace(/^\[(.*)\]$/, '$1'), port }
}

/** Why a local connection did not become a stream, or how its stream ended: the `result` of `spokelink_hub_streams_total`. */
type HubConnectionResult = 'ok' | 'refused' | 'aborted' | 'full' | 'no_session' | 'unsupported' | 'open_failed'

interface Listener {
  spec: HubServiceListen
  server: net.Server
  connections: number
  lastWarnAt: number
  unwarned: number
}

/**
 * The agent's `--hub-service` listeners: each accepted connection becomes a stream the agent opens to the exit-node,
 * naming the hub service (never an address: the exit-node dials what its spokes file says). Bytes flow with
 * backpressure through the stream's window both ways, so nothing here buffers more than a socket and a window. A
 * connection that cannot be carried (no session, an exit-node without hub services, the cap, a refusal) is closed at
 * once, so the local client (Prometheus remote-write) fails fast and retries instead of hanging.
 */
export class HubServiceListeners {
  readonly #listeners: Listener[]
  readonly #options: Required<HubServiceListenerOptions>
  readonly #log: Logger
  readonly #metrics: AgentMetrics
  readonly #session: () => HubSession | undefined
  readonly #now: () => number
  readonly #sockets = new Set<net.Socket>()

  constructor (specs: readonly HubServiceListen[], options: HubServiceListenerOptions, deps: { logger: Logger, metrics: AgentMetrics, session: () => HubSession | undefined, now?: () => number }) {
    this.#options = { ...HUB_SERVICE_LISTENER_DEFAULTS, ...options }
    this.#log = deps.logger.child({ component: 'agent.hub-services' })
    this.#metrics = deps.metrics
    this.#session = deps.session
    this.#now = deps.now ?? Date.now
    this.#listeners = specs.map((spec) => ({ spec, server: net.createServer({ allowHalfOpen: true, noDelay: true }), connections: 0, lastWarnAt: -Infinity, unwarned: 0 }))
  }

  /**
   * Binds every listener; logs `listening` with the service and the bound port.
   * @throws AgentError SLK_ERR_AGENT_LISTEN naming the service and address (the ones bound so far are closed)
   */
  async listen (): Promise<void> {
    try {
      for (const listener of this.#listeners) {
        const { server, spec } = listener
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ host: spec.host, port: spec.port }, () => {
            server.off('error', reject)
            resolve()
          })
        }).catch((err: unknown) => {
          const code = err instanceof Error && 'code' in err ? String(err.code) : 'error'
          throw new AgentError('SLK_ERR_AGENT_LISTEN', `--hub-service ${spec.name}: cannot listen on ${spec.host}:${spec.port} (${code})`, { cause: err })
        })
        server.on('error', (err) => { this.#log.error({ hubService: spec.name, err }, 'hub service listener failed') })
        server.on('connection', (socket) => { void this.#carry(listener, socket) })
        this.#log.info({ hubService: spec.name, address: spec.host, port: this.#portOf(listener) }, 'listening')
      }
    } catch (err) {
      await this.close()
      throw err
    }
  }

  /** Bound addresses by hub service name (port 0 resolved). */
  addresses (): Record<string, { host: string, port: number }> {
    return Object.fromEntries(this.#listeners.map((listener) => [listener.spec.name, { host: listener.spec.host, port: this.#portOf(listener) }]))
  }

  /** Stops listening and destroys open connections. Idempotent. */
  async close (): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    await Promise.all(this.#listeners.map(async ({ server }) => {
      if (!server.listening) return
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }))
  }

  #portOf (listener: Listener): number {
    const address = listener.server.address()
    return typeof address === 'object' && address !== null ? address.port : listener.spec.port
  }

  async #carry (listener: Listener, socket: net.Socket): Promise<void> {
    const name = listener.spec.name
    // Until the relay owns it, a client's reset must not become an uncaught 'error'.
    socket.on('error', (err) => { this.#log.debug({ hubService: name, err }, 'hub service connection error') })
    if (listener.connections >= this.#options.maxConnectionsPerHubService) {
      this.#drop(listener, socket, 'full', { maxConnections: this.#options.maxConnectionsPerHubService }, 'hub service connections at their cap; refused')
      return
    }
    const session = this.#session()
    if (session === undefined || session.mux.closed) {
      this.#drop(listener, socket, 'no_session', {}, 'no session with the exit-node; hub service connection refused')
      return
    }
    if (!session.supported) {
      this.#drop(listener, socket, 'unsupported', {}, 'the exit-node does not serve hub services (an older version); hub service connection refused')
      return
    }
    listener.connections++
    this.#sockets.add(socket)
    try {
      await waitForFirstBytes(socket, this.#options.firstBytesHoldMs)
      if (socket.destroyed) return
      let stream: MuxStream
      try {
        stream = session.mux.openStream()
      } catch (err) {
        this.#drop(listener, socket, 'open_failed', { err }, 'hub stream could not be opened; connection refused')
        return
      }
      this.#metrics.hubStreamsActive.inc({ service: name })
      const timeoutMs = this.#options.statusTimeoutMs
      const failure = await openHubStream(stream, socket, {
        hubService: name,
        statusTimeoutMs: timeoutMs,
        statusTimeoutError: () => new AgentError('SLK_ERR_AGENT_STREAM_HEADER', `exit-node did not answer hub stream ${stream.id} within ${timeoutMs} ms`),
      })
      this.#metrics.hubStreamsActive.dec({ service: name })
      if (failure instanceof ProtocolError && failure.code === 'SLK_ERR_PROTO_HUB_SERVICE_REFUSED') {
        this.#metrics.hubStreamsTotal.inc({ service: name, result: 'refused' })
        this.#warn(listener, { code: failure.code, reason: failure.message }, 'hub stream refused by the exit-node')
        return
      }
      this.#metrics.hubStreamsTotal.inc({ service: name, result: failure === undefined ? 'ok' : 'aborted' })
      if (failure !== undefined && this.#log.isLevelEnabled('debug')) this.#log.debug({ hubService: name, streamId: stream.id, err: failure }, 'hub stream aborted')
    } finally {
      listener.connections--
      this.#sockets.delete(socket)
    }
  }

  /** Resets the local connection at once (the client sees ECONNRESET, not a hang) and counts why. */
  #drop (listener: Listener, socket: net.Socket, result: HubConnectionResult, fields: Record<string, unknown>, msg: string): void {
    socket.resetAndDestroy()
    this.#metrics.hubStreamsTotal.inc({ service: listener.spec.name, result })
    this.#warn(listener, fields, msg)
  }

  /** One warn line per hub service per interval, carrying how many were held back since the last one. */
  #warn (listener: Listener, fields: Record<string, unknown>, msg: string): void {
    listener.unwarned++
    const now = this.#now()
    if (now - listener.lastWarnAt < this.#options.refusalLogIntervalMs) return
    this.#log.warn({ hubService: listener.spec.name, ...fields, count: listener.unwarned }, msg)
    listener.lastWarnAt = now
    listener.unwarned = 0
  }
}
