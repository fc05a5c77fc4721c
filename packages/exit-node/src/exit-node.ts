import { randomBytes } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import { DEFAULT_CIPHERS } from 'node:tls'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { WebSocketServer } from 'ws'
import type { WebSocket } from 'ws'
import {
  CONNECT_PATH,
  PROTOCOL_NAME,
  ProtocolError,
  createMuxSession,
  createWebSocketDuplex,
  encodeFramedJson,
  parseHello,
  readFramedJson,
} from '@spokelink/protocol'
import type { MuxSession, MuxSessionOptions, MuxStream, Welcome } from '@spokelink/protocol'
import type { SpokesConfig } from '@spokelink/auth'
import { DataPlane } from './data-plane.js'
import { ExitNodeError } from './errors.js'
import { createExitNodeMetrics } from './metrics.js'
import type { ExitNodeMetrics } from './metrics.js'
import { rejectUpgrade } from './reject-upgrade.js'
import { buildTargetGroups } from './service-discovery.js'
import { SessionRegistry } from './session-registry.js'
import type { SpokeSession } from './spoke-session.js'
import { sessionRevocationReason } from './token-validity.js'
import type { SessionCredential } from './token-validity.js'
import { authenticateUpgrade, offersSubprotocol } from './upgrade-auth.js'

/** Options of {@link createExitNode}; every timeout and limit is here. */
export interface ExitNodeOptions {
  /** Control-plane address. @default '127.0.0.1' */
  host?: string
  /** Control-plane port; 0 picks a free one. @default 8123 */
  port?: number
  /** Serve wss with this certificate and key (PEM); plain ws when absent. @default undefined */
  tls?: { certPem: string, keyPem: string } | undefined
  /** Interval of yamux and WebSocket pings. @default 15000 */
  keepaliveIntervalMs?: number
  /** A session whose pong is this late is closed. @default 30000 */
  keepaliveTimeoutMs?: number
  /** Time an agent has to send its hello after the upgrade. @default 10000 */
  helloTimeoutMs?: number
  /** Time an agent has to dial its upstream and answer a stream header. @default 10000 */
  streamOpenTimeoutMs?: number
  /** On close, how long open data streams may drain before they are cut. @default 10000 */
  shutdownGraceMs?: number
  /** Largest WebSocket message accepted from an agent. @default 4194304 */
  maxMessageBytes?: number
  /** How often token expiry is re-checked for live sessions. @default 1000 */
  expiryCheckIntervalMs?: number
  /** Target address template for `/v1/sd`: `{spoke}`, `{upstream}`, `{host}`, `{port}`. @default '{host}:{port}' */
  sdTargetTemplate?: string
  /** Options of each session's multiplexer (windows, stream limits). @default {} */
  mux?: MuxSessionOptions
}

type ResolvedExitNodeOptions = Required<Omit<ExitNodeOptions, 'tls'>> & Pick<ExitNodeOptions, 'tls'>

/** Defaults of {@link ExitNodeOptions}. */
export const EXIT_NODE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8123,
  tls: undefined,
  keepaliveIntervalMs: 15_000,
  keepaliveTimeoutMs: 30_000,
  helloTimeoutMs: 10_000,
  streamOpenTimeoutMs: 10_000,
  shutdownGraceMs: 10_000,
  maxMessageBytes: 4 * 1024 * 1024,
  expiryCheckIntervalMs: 1000,
  sdTargetTemplate: '{host}:{port}',
  mux: {},
} satisfies ResolvedExitNodeOptions

/** What {@link createExitNode} needs from its caller. */
export interface ExitNodeDeps {
  logger: Logger
  /** The prom-client registry the tunnel metrics go on and `/metrics` serves. */
  registry: Registry
  /** @default () => new Date() */
  clock?: () => Date
}

/**
 * How long a new data-plane connection waits for its client's first bytes before its stream opens without
 * them. Clients that speak first send within microseconds of the handshake; servers that speak first
 * (a protocol this tunnel may carry) pay this once per connection.
 */
const FIRST_BYTES_HOLD_MS = 2

/**
 * Node's default list with TLS_AES_128_GCM_SHA256 moved first: every session then carries its bulk data with
 * AES-128-GCM (what `ssh -c aes128-gcm` users pick for speed), which costs less CPU per byte than AES-256 with AES-NI.
 */
const TLS_CIPHERS = ['TLS_AES_128_GCM_SHA256', ...DEFAULT_CIPHERS.split(':').filter((c) => c !== 'TLS_AES_128_GCM_SHA256')].join(':')

/** WebSocket close codes the exit-node uses; 4000–4999 is the application range. */
const WS_CLOSE = { REVOKED: 4403, HELLO_FAILED: 4400 } as const

/**
 * Validates exit-node options and fills in defaults.
 * @throws ExitNodeError SLK_ERR_EXIT_INVALID_OPTION naming the option
 */
export function validateExitNodeOptions (options: ExitNodeOptions): Readonly<ResolvedExitNodeOptions> {
  const resolved: ResolvedExitNodeOptions = { ...EXIT_NODE_DEFAULTS, ...options }
  const positive = ['keepaliveIntervalMs', 'keepaliveTimeoutMs', 'helloTimeoutMs', 'streamOpenTimeoutMs', 'maxMessageBytes', 'expiryCheckIntervalMs'] as const
  for (const name of positive) {
    const value = resolved[name]
    if (!Number.isInteger(value) || value <= 0) {
      throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option ${name}: expected a positive integer, got ${String(value)}`)
    }
  }
  if (!Number.isInteger(resolved.shutdownGraceMs) || resolved.shutdownGraceMs < 0) {
    throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option shutdownGraceMs: expected an integer ≥ 0, got ${String(resolved.shutdownGraceMs)}`)
  }
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65535) {
    throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option port: expected 0–65535, got ${String(resolved.port)}`)
  }
  return Object.freeze(resolved)
}

/**
 * The exit-node: authenticates agents before the WebSocket upgrade, runs one mux session per agent,
 * exposes each spoke's upstreams on data-plane ports and serves health, metrics and service discovery.
 */
export class ExitNode {
  readonly #options: Readonly<ResolvedExitNodeOptions>
  readonly #log: Logger
  readonly #clock: () => Date
  readonly #metrics: ExitNodeMetrics
  readonly #promRegistry: Registry
  readonly #server: http.Server
  readonly #wss: WebSocketServer
  readonly #sessions = new SessionRegistry()
  readonly #dataPlane: DataPlane
  /** Mux sessions past the upgrade, including those still in their hello. */
  readonly #muxes = new Set<MuxSession>()
  #spokes: SpokesConfig
  #expiryTimer: NodeJS.Timeout | undefined
  #closing: Promise<void> | undefined
  #listening = false

  constructor (options: ExitNodeOptions, spokes: SpokesConfig, deps: ExitNodeDeps) {
    this.#options = validateExitNodeOptions(options)
    this.#spokes = spokes
    this.#log = deps.logger.child({ component: 'exit-node' })
    this.#clock = deps.clock ?? (() => new Date())
    this.#promRegistry = deps.registry
    this.#metrics = createExitNodeMetrics(deps.registry)
    this.#dataPlane = new DataPlane({ streamOpenTimeoutMs: this.#options.streamOpenTimeoutMs, firstBytesHoldMs: FIRST_BYTES_HOLD_MS }, { metrics: this.#metrics, logger: deps.logger })
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => { void this.#handleRequest(req, res) }
    const tls = this.#options.tls
    this.#server = tls === undefined
      ? http.createServer(onRequest)
      : https.createServer({ cert: tls.certPem, key: tls.keyPem, ciphers: TLS_CIPHERS, honorCipherOrder: true }, onRequest)
    this.#server.headersTimeout = this.#options.helloTimeoutMs
    this.#server.requestTimeout = this.#options.helloTimeoutMs
    // Garbage before the upgrade, TLS errors and half-sent requests cost one socket, nothing more.
    this.#server.on('clientError', (_err, socket) => { socket.destroy() })
    this.#server.on('tlsClientError', (err) => { this.#log.debug({ err }, 'tls handshake failed') })
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: this.#options.maxMessageBytes,
      handleProtocols: (protocols) => protocols.has(PROTOCOL_NAME) ? PROTOCOL_NAME : false,
    })
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.#handleUpgrade(req, socket, head) })
    this.#sessions.on('spoke-online', (spoke) => {
      this.#metrics.spokeConnected.set({ spoke }, 1)
      this.#log.info({ spoke }, 'spoke connected')
    })
    this.#sessions.on('spoke-offline', (spoke) => {
      this.#metrics.spokeConnected.set({ spoke }, 0)
      this.#log.info({ spoke }, 'spoke disconnected')
    })
  }

  /**
   * Binds the control-plane port.
   * @throws ExitNodeError SLK_ERR_EXIT_LISTEN when the address is in use or not available
   */
  async listen (): Promise<AddressInfo> {
    const { host, port } = this.#options
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'EADDRINUSE' ? 'is already in use' : err.code === 'EADDRNOTAVAIL' ? 'is not an address of this host' : `failed (${err.code ?? err.message})`
        reject(new ExitNodeError('SLK_ERR_EXIT_LISTEN', `cannot listen on ${host}:${port}: the address ${why}`, { cause: err }))
      }
      this.#server.once('error', onError)
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError)
        resolve()
      })
    })
    this.#server.on('error', (err) => { this.#log.error({ err }, 'control server failed') })
    this.#listening = true
    this.#expiryTimer = setInterval(() => { this.#revalidateSessions() }, this.#options.expiryCheckIntervalMs).unref()
    const address = this.address()
    this.#log.info({ address: address.address, port: address.port, tls: this.#options.tls !== undefined }, 'listening')
    return address
  }

  /** The bound control-plane address. */
  address (): AddressInfo {
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new ExitNodeError('SLK_ERR_EXIT_LISTEN', 'exit-node is not listening')
    return address
  }

  /**
   * Swaps in a reloaded spokes config. Sessions whose credential no longer holds (token revoked, expired, removed,
   * moved to another spoke, or its sha256 changed under the same id), whose spoke was removed or whose ports changed
   * are closed at once.
   */
  updateSpokes (spokes: SpokesConfig): void {
    const previous = this.#spokes
    this.#spokes = spokes
    for (const session of this.#sessions.all()) {
      const before = previous.spokes.find((spoke) => spoke.name === session.spoke)
      const after = spokes.spokes.find((spoke) => spoke.name === session.spoke)
      if (after !== undefined && before !== undefined && JSON.stringify(before.ports) !== JSON.stringify(after.ports)) {
        this.#endSession(session, 'spoke ports changed')
      }
    }
    this.#revalidateSessions()
  }

  /**
   * Swaps in new TLS material (SIGHUP after a certificate renewal): new handshakes use it, live sessions keep theirs.
   * @throws ExitNodeError SLK_ERR_EXIT_TLS_RELOAD when the exit-node serves plain ws or the PEMs are not a usable
   * certificate and key (the old material stays in force)
   */
  setTls (tls: { certPem: string, keyPem: string }): void {
    const server = this.#server
    if (!(server instanceof https.Server)) {
      throw new ExitNodeError('SLK_ERR_EXIT_TLS_RELOAD', 'the exit-node serves plain ws; TLS material can only be reloaded when it was started with TLS')
    }
    try {
      server.setSecureContext({ cert: tls.certPem, key: tls.keyPem, ciphers: TLS_CIPHERS, honorCipherOrder: true })
    } catch (err) {
      const why = err instanceof Error && 'code' in err ? String(err.code) : 'unusable PEM'
      throw new ExitNodeError('SLK_ERR_EXIT_TLS_RELOAD', `new TLS certificate or key rejected (${why}); the previous ones stay in use`, { cause: err })
    }
    this.#log.info('tls material reloaded')
  }

  /** The registry of live spoke sessions (read-only use). */
  get sessions (): SessionRegistry {
    return this.#sessions
  }

  /**
   * Graceful shutdown: refuse new agents and connections, go-away to every agent, let open data
   * streams drain up to `shutdownGraceMs`, then cut what is left. Idempotent.
   */
  async close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return await this.#closing
  }

  async #shutdown (): Promise<void> {
    this.#log.info({ sessions: this.#muxes.size }, 'shutting down')
    clearInterval(this.#expiryTimer)
    for (const mux of this.#muxes) mux.goAway('normal')
    // The control server keeps answering while streams drain: /readyz says 503 and new agents get 503.
    await this.#dataPlane.drain(this.#options.shutdownGraceMs)
    this.#server.close()
    await Promise.allSettled([...this.#muxes].map(async (mux) => { await mux.close({ graceMs: 0 }) }))
    for (const ws of this.#wss.clients) ws.terminate()
    this.#server.closeAllConnections()
    this.#wss.close()
    this.#listening = false
    this.#log.info('shut down')
  }

  async #handleRequest (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) })
      res.end(body)
    }
    if (req.method !== 'GET') { send(405, 'method not allowed\n'); return }
    switch (path) {
      case '/healthz': send(200, 'ok\n'); return
      case '/readyz': send(this.#listening && this.#closing === undefined ? 200 : 503, this.#closing === undefined ? 'ready\n' : 'shutting down\n'); return
      case '/metrics': send(200, await this.#promRegistry.metrics(), this.#promRegistry.contentType); return
      case '/v1/sd': {
        const requestHost = (req.headers.host ?? '127.0.0.1').replace(/:\d+$/, '')
        const groups = buildTargetGroups(this.#spokes, (spoke) => this.#sessions.isConnected(spoke), this.#options.sdTargetTemplate, requestHost)
        send(200, JSON.stringify(groups), 'application/json')
        return
      }
      case CONNECT_PATH: send(426, `${CONNECT_PATH} takes a WebSocket upgrade with subprotocol ${PROTOCOL_NAME}\n`); return
      default: send(404, 'not found\n')
    }
  }

  #handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A peer that resets mid-handshake must cost its own socket only.
    socket.on('error', () => { socket.destroy() })
    const remoteAddress = req.socket.remoteAddress
    if ((req.url ?? '').split('?')[0] !== CONNECT_PATH) { rejectUpgrade(socket, 404, `upgrade only on ${CONNECT_PATH}`); return }
    if (this.#closing !== undefined) { rejectUpgrade(socket, 503, 'exit-node is shutting down'); return }
    if (!offersSubprotocol(req, PROTOCOL_NAME)) {
      const offered = req.headers['sec-websocket-protocol'] ?? 'no subprotocol'
      this.#metrics.authFailuresTotal.inc({ reason: 'version' })
      this.#log.warn({ remoteAddress, offered }, 'agent protocol version not supported')
      rejectUpgrade(socket, 400, `exit-node speaks ${PROTOCOL_NAME}; the agent offered ${offered.slice(0, 64)}`, { 'X-Spokelink-Protocol': PROTOCOL_NAME })
      return
    }
    const auth = authenticateUpgrade(req, this.#spokes, this.#clock())
    if (!auth.ok) {
      this.#metrics.authFailuresTotal.inc({ reason: auth.metricReason })
      this.#log.warn({ remoteAddress, reason: auth.reason, status: auth.status }, 'agent refused')
      rejectUpgrade(socket, auth.status, auth.reason)
      return
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#startSession(ws, { spoke: auth.spoke, tokenId: auth.tokenId, tokenSha256: auth.tokenSha256 }, remoteAddress)
    })
  }

  /** Runs one agent connection; called synchronously on upgrade so no message is lost. */
  #startSession (ws: WebSocket, credential: SessionCredential, remoteAddress: string | undefined): void {
    const { spoke, tokenId } = credential
    const sessionId = randomBytes(6).toString('hex')
    const log = this.#log.child({ spoke, sessionId, tokenId })
    const mux = createMuxSession(createWebSocketDuplex(ws), 'server', {
      ...this.#options.mux,
      keepaliveIntervalMs: this.#options.keepaliveIntervalMs,
      keepaliveTimeoutMs: this.#options.keepaliveTimeoutMs,
    }, { logger: log })
    this.#muxes.add(mux)
    // WebSocket pings keep idle proxies and load balancers from dropping the socket.
    const wsPing = setInterval(() => { ws.ping() }, this.#options.keepaliveIntervalMs).unref()
    let session: SpokeSession | undefined
    mux.on('close', (err?: Error) => {
      clearInterval(wsPing)
      clearTimeout(helloTimer)
      this.#muxes.delete(mux)
      if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('SLK_ERR_MUX_') &&
        err.code !== 'SLK_ERR_MUX_TRANSPORT_CLOSED' && err.code !== 'SLK_ERR_MUX_SESSION_CLOSED') {
        this.#metrics.muxProtocolErrorsTotal.inc({ spoke })
      }
      if (session === undefined) return
      this.#sessions.remove(session)
      this.#dataPlane.detach(session)
      this.#metrics.sessions.set({ spoke }, this.#sessions.sessionsOf(spoke).length)
      log.info({ err, durationMs: Date.now() - openedAt }, 'session closed')
    })
    const openedAt = Date.now()
    const disconnect = (reason: string): void => {
      // A close frame tells the agent why; the abort backs it up if the agent does not answer.
      ws.close(WS_CLOSE.REVOKED, reason)
      setTimeout(() => { mux.abort(new ExitNodeError('SLK_ERR_EXIT_SESSION_REVOKED', `session closed: ${reason}`)) }, 1000).unref()
    }
    const helloTimer = setTimeout(() => {
      log.warn({ remoteAddress }, 'agent sent no hello in time')
      ws.close(WS_CLOSE.HELLO_FAILED, 'no hello in time')
      mux.abort(new ExitNodeError('SLK_ERR_EXIT_HELLO', 'agent sent no hello in time'))
    }, this.#options.helloTimeoutMs)
    mux.on('stream', (stream: MuxStream) => {
      stream.on('error', (err) => { log.debug({ streamId: stream.id, err }, 'agent stream closed') })
      if (session !== undefined || stream.id !== 1) {
        // Agents open only the control stream today; anything else is refused rather than left hanging.
        stream.destroy()
        return
      }
      void this.#runHello(mux, stream, { ...credential, sessionId, disconnect }, log).then((ready) => {
        clearTimeout(helloTimer)
        session = ready
        if (session === undefined) return
        this.#metrics.sessions.set({ spoke }, this.#sessions.sessionsOf(spoke).length)
        log.info({ agent: session.agent, remoteAddress, ports: session.ports }, 'session opened')
      })
    })
  }

  async #runHello (mux: MuxSession, control: MuxStream, identity: SessionCredential & { sessionId: string, disconnect: (reason: string) => void }, log: Logger): Promise<SpokeSession | undefined> {
    const { sessionId, spoke, tokenId, tokenSha256, disconnect } = identity
    const fail = (code: string, message: string): undefined => {
      log.warn({ code, reason: message }, 'hello refused')
      const welcome: Welcome = { ok: false, code, error: message }
      control.end(encodeFramedJson(welcome))
      void mux.close({ graceMs: 1000 })
      return undefined
    }
    let hello
    try {
      // No deadline of its own: the session's hello timer aborts the mux, which fails this read.
      hello = parseHello(await readFramedJson(control))
    } catch (err) {
      return err instanceof ProtocolError ? fail(err.code, err.message) : fail('SLK_ERR_PROTO_HEADER_INVALID', 'hello could not be read')
    }
    const config = this.#spokes.spokes.find((candidate) => candidate.name === spoke)
    const revoked = sessionRevocationReason(this.#spokes, identity, this.#clock())
    if (config === undefined || revoked !== undefined) return fail('SLK_ERR_EXIT_SESSION_REVOKED', revoked ?? 'spoke removed')
    if (mux.closed) return undefined
    const offered = new Set(hello.upstreams)
    const wanted = config.ports.filter((port) => offered.has(port.upstream))
    const session: SpokeSession = { sessionId, spoke, tokenId, tokenSha256, agent: hello.agent, mux, ports: [], activeStreams: 0, disconnect }
    session.ports = await this.#dataPlane.attach(session, wanted)
    const { ports } = session
    if (mux.closed) {
      this.#dataPlane.detach(session)
      return undefined
    }
    this.#sessions.add(session)
    if (wanted.length < config.ports.length) {
      const missing = config.ports.filter((port) => !offered.has(port.upstream)).map((port) => port.upstream)
      log.warn({ missing }, 'agent does not offer every upstream of its spoke')
    }
    const welcome: Welcome = { ok: true, spoke, ports }
    control.write(encodeFramedJson(welcome))
    // The control stream stays open for the session's life; its end carries no meaning yet.
    control.resume()
    return session
  }

  #revalidateSessions (): void {
    const now = this.#clock()
    for (const session of this.#sessions.all()) {
      const reason = sessionRevocationReason(this.#spokes, session, now)
      if (reason !== undefined) this.#endSession(session, reason)
    }
  }

  #endSession (session: SpokeSession, reason: string): void {
    this.#log.info({ spoke: session.spoke, sessionId: session.sessionId, tokenId: session.tokenId, reason }, 'session revoked')
    this.#sessions.remove(session)
    this.#dataPlane.detach(session)
    session.disconnect(reason)
  }
}

/**
 * Creates an exit-node; call `listen()` to bind it.
 * @throws ExitNodeError SLK_ERR_EXIT_INVALID_OPTION
 */
export function createExitNode (options: ExitNodeOptions, spokes: SpokesConfig, deps: ExitNodeDeps): ExitNode {
  return new ExitNode(options, spokes, deps)
}
