import net from 'node:net'
import type { Logger } from 'pino'
import { ProtocolError, openDataStream, waitForFirstBytes } from '@spokelink/protocol'
import type { GrantedPort, MuxStream } from '@spokelink/protocol'
import type { PortConfig } from '@spokelink/auth'
import { bindServer } from './bind-server.js'
import { ExitNodeError } from './errors.js'
import { EventSampler } from './event-sampler.js'
import type { ExitNodeMetrics } from './metrics.js'
import { fitPortCaps } from './port-caps.js'
import type { SpokeSession } from './spoke-session.js'
import type { TrafficMeter } from './traffic-meter.js'

/** Options for {@link DataPlane}. */
export interface DataPlaneOptions {
  /** How long the agent may take to dial its upstream and answer the status byte. */
  streamOpenTimeoutMs: number
  /** How long a new connection may wait for its client's first bytes, so they go with the stream's SYN. */
  firstBytesHoldMs: number
  /** A connection with no bytes either way for this long is closed, unless its port sets `idleTimeoutMs`. */
  idleTimeoutMs: number
  /** Concurrent connections per port, unless the port sets `maxConnections`. */
  maxConnectionsPerPort: number
  /** Data streams one session can carry (its `maxStreams` less the control stream); a spoke's port caps are fitted into it. */
  streamBudget: number
  /** At most one "port full" log line per port per this interval. */
  refusalLogIntervalMs: number
}

interface Listener {
  server: net.Server
  /** Sessions that granted this port; the listener closes when the last one goes. */
  sessions: Set<SpokeSession>
  upstream: string
  /** Rotates the first candidate, so equally busy sessions take turns (sequential connections spread too). */
  turn: number
  /** Connections accepted and not yet closed, whether or not their stream is open yet. */
  connections: number
  maxConnections: number
  idleTimeoutMs: number
  refusals: EventSampler
}

/** The agent said no (unknown upstream, dial failed) or did not answer in time; anything else aborted a stream that was open. */
function isRefusal (err: Error): boolean {
  return (err instanceof ProtocolError && err.code === 'SLK_ERR_PROTO_UPSTREAM_REFUSED') ||
    (err instanceof ExitNodeError && err.code === 'SLK_ERR_EXIT_STREAM_OPEN_TIMEOUT')
}

function isIdleTimeout (err: Error): boolean {
  return err instanceof ExitNodeError && err.code === 'SLK_ERR_EXIT_IDLE_TIMEOUT'
}

/** `spokelink_streams_total` result of a relay that ended with `failure`. */
function streamResult (failure: Error | undefined): 'ok' | 'refused' | 'idle_timeout' | 'aborted' {
  if (failure === undefined) return 'ok'
  if (isRefusal(failure)) return 'refused'
  return isIdleTimeout(failure) ? 'idle_timeout' : 'aborted'
}

const key = (spoke: string, upstream: string): string => `${spoke}\u0000${upstream}`

/**
 * Binds a spoke's data-plane ports while it has a session offering them, and carries each
 * accepted TCP connection over a new mux stream of the least busy session.
 */
export class DataPlane {
  readonly #listeners = new Map<string, Listener>()
  readonly #metrics: ExitNodeMetrics
  readonly #log: Logger
  readonly #options: DataPlaneOptions
  readonly #sockets = new Set<net.Socket>()
  readonly #traffic: TrafficMeter

  constructor (options: DataPlaneOptions, deps: { metrics: ExitNodeMetrics, logger: Logger, traffic: TrafficMeter }) {
    this.#options = options
    this.#metrics = deps.metrics
    this.#traffic = deps.traffic
    this.#log = deps.logger.child({ component: 'exit-node.data-plane' })
  }

  /**
   * Binds the ports this session grants that are not bound yet and returns the ones that are now
   * served. A port that cannot be bound is logged and left out, so the rest of the spoke still works.
   */
  async attach (session: SpokeSession, ports: PortConfig[]): Promise<GrantedPort[]> {
    const granted: GrantedPort[] = []
    const caps = fitPortCaps(ports.map((port) => port.maxConnections ?? this.#options.maxConnectionsPerPort), this.#options.streamBudget)
    if (caps.some((cap, i) => cap !== (ports[i]?.maxConnections ?? this.#options.maxConnectionsPerPort))) {
      this.#log.warn({ spoke: session.spoke, streamBudget: this.#options.streamBudget, maxConnections: Object.fromEntries(ports.map((port, i) => [port.upstream, caps[i]])) },
        'data-plane port caps scaled down to fit the session stream budget')
    }
    for (const [i, port] of ports.entries()) {
      const id = key(session.spoke, port.upstream)
      let listener = this.#listeners.get(id)
      if (listener === undefined) {
        try {
          listener = await this.#bind(session.spoke, port, caps[i] ?? this.#options.maxConnectionsPerPort)
        } catch (err) {
          this.#log.error({ spoke: session.spoke, upstream: port.upstream, address: port.listen.host, port: port.listen.port, err }, 'data-plane port could not be bound')
          continue
        }
        this.#listeners.set(id, listener)
      }
      listener.sessions.add(session)
      const address = listener.server.address()
      granted.push({ upstream: port.upstream, host: port.listen.host, port: typeof address === 'object' && address !== null ? address.port : port.listen.port })
    }
    return granted
  }

  /** Forgets a session; a port no session grants any more is closed, so new connections are refused at once. */
  detach (session: SpokeSession): void {
    for (const [id, listener] of this.#listeners) {
      if (!listener.sessions.delete(session) || listener.sessions.size > 0) continue
      this.#listeners.delete(id)
      listener.server.close()
      this.#log.info({ spoke: session.spoke, upstream: listener.upstream }, 'data-plane port closed')
    }
  }

  /**
   * Stops accepting, lets open connections finish for up to `graceMs`, then destroys the rest.
   * Resolves once no data-plane connection is left.
   */
  async drain (graceMs: number): Promise<void> {
    for (const listener of this.#listeners.values()) listener.server.close()
    this.#listeners.clear()
    if (this.#sockets.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, graceMs)
        const check = (): void => { if (this.#sockets.size === 0) finish() }
        const sockets = [...this.#sockets]
        function finish (): void {
          clearTimeout(timer)
          for (const socket of sockets) socket.off('close', check)
          resolve()
        }
        for (const socket of sockets) socket.on('close', check)
      })
    }
    for (const socket of this.#sockets) socket.destroy()
  }

  async #bind (spoke: string, port: PortConfig, maxConnections: number): Promise<Listener> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true })
    const listener: Listener = {
      server,
      sessions: new Set(),
      upstream: port.upstream,
      turn: 0,
      connections: 0,
      maxConnections,
      idleTimeoutMs: port.idleTimeoutMs ?? this.#options.idleTimeoutMs,
      refusals: new EventSampler(this.#options.refusalLogIntervalMs),
    }
    server.on('connection', (socket) => { void this.#carry(socket, spoke, listener) })
    await bindServer(server, port.listen.host, port.listen.port, `data-plane port ${port.upstream}`)
    server.on('error', (err) => { this.#log.error({ spoke, upstream: port.upstream, err }, 'data-plane listener failed') })
    const address = server.address()
    this.#log.info({ spoke, upstream: port.upstream, address: port.listen.host, port: typeof address === 'object' && address !== null ? address.port : port.listen.port, maxConnections, idleTimeoutMs: listener.idleTimeoutMs }, 'data-plane port bound')
    return listener
  }

  async #carry (socket: net.Socket, spoke: string, listener: Listener): Promise<void> {
    const { upstream } = listener
    // Until relay() owns it, a client's reset must not become an uncaught 'error'.
    socket.on('error', (err) => { this.#log.debug({ spoke, upstream, err }, 'data-plane connection error') })
    if (listener.connections >= listener.maxConnections) {
      this.#refuse(socket, spoke, listener)
      return
    }
    listener.connections++
    this.#sockets.add(socket)
    socket.once('close', () => {
      listener.connections--
      this.#sockets.delete(socket)
    })
    // Node refreshes a socket's timeout on every read and write, so this fires only after no bytes either way.
    socket.setTimeout(listener.idleTimeoutMs, () => {
      this.#log.debug({ spoke, upstream, idleTimeoutMs: listener.idleTimeoutMs }, 'data-plane connection idle; closing it')
      socket.destroy(new ExitNodeError('SLK_ERR_EXIT_IDLE_TIMEOUT', `no bytes either way for ${listener.idleTimeoutMs} ms on spoke ${spoke} port ${upstream}`))
    })
    await waitForFirstBytes(socket, this.#options.firstBytesHoldMs)
    if (socket.destroyed) {
      if (socket.errored !== null && isIdleTimeout(socket.errored)) this.#metrics.streamsTotal.inc({ spoke, upstream, result: 'idle_timeout' })
      return
    }
    const session = this.#pick(listener)
    if (session === undefined) {
      this.#metrics.streamsTotal.inc({ spoke, upstream, result: 'no_session' })
      socket.destroy()
      return
    }
    let stream: MuxStream
    try {
      stream = session.mux.openStream()
    } catch (err) {
      this.#metrics.streamsTotal.inc({ spoke, upstream, result: 'open_failed' })
      this.#log.debug({ spoke, sessionId: session.sessionId, upstream, err }, 'stream open failed')
      socket.destroy()
      return
    }
    const started = performance.now()
    session.streamOpened()
    this.#metrics.streamsActive.inc({ spoke, upstream })
    this.#metrics.streamsOpenedTotal.inc({ spoke, upstream })
    // Bytes are counted while the connection lives (a keep-alive scrape connection may never close).
    const untrack = this.#traffic.track(socket, spoke)
    const timeoutMs = this.#options.streamOpenTimeoutMs
    const failure = await openDataStream(stream, socket, {
      upstream,
      statusTimeoutMs: timeoutMs,
      statusTimeoutError: () => new ExitNodeError('SLK_ERR_EXIT_STREAM_OPEN_TIMEOUT', `agent did not answer stream ${stream.id} within ${timeoutMs} ms`),
    })
    const result = streamResult(failure)
    if (failure !== undefined && this.#log.isLevelEnabled('debug')) {
      this.#log.debug({ spoke, sessionId: session.sessionId, streamId: stream.id, upstream, err: failure }, `stream ${result === 'refused' ? 'refused' : result === 'idle_timeout' ? 'closed idle' : 'aborted'}`)
    }
    session.streamClosed()
    this.#metrics.streamsActive.dec({ spoke, upstream })
    this.#metrics.streamsTotal.inc({ spoke, upstream, result })
    untrack()
    this.#metrics.streamDurationSeconds.observe({ spoke, upstream }, (performance.now() - started) / 1000)
  }

  /**
   * A port at its cap accepts the connection and resets it at once: the client fails fast with
   * ECONNRESET (Prometheus marks the scrape failed) instead of waiting in the kernel backlog, and the
   * session's streams stay free for the spoke's other ports.
   */
  #refuse (socket: net.Socket, spoke: string, listener: Listener): void {
    const { upstream, maxConnections } = listener
    socket.resetAndDestroy()
    this.#metrics.streamsTotal.inc({ spoke, upstream, result: 'port_full' })
    const refused = listener.refusals.record()
    if (refused !== undefined) {
      this.#log.warn({ spoke, upstream, maxConnections, refused, intervalMs: this.#options.refusalLogIntervalMs }, 'data-plane port full; connections refused')
    }
  }

  #pick (listener: Listener): SpokeSession | undefined {
    let best: SpokeSession | undefined
    const sessions = [...listener.sessions]
    const first = listener.turn++ % Math.max(sessions.length, 1)
    for (const session of [...sessions.slice(first), ...sessions.slice(0, first)]) {
      if (session.mux.closed || session.mux.remoteGoAway !== undefined) continue
      if (best === undefined || session.activeStreams < best.activeStreams) best = session
    }
    return best
  }
}
