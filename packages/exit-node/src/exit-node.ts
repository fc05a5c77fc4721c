import { once } from 'node:events'
import { setImmediate } from 'node:timers/promises'
import os from 'node:os'
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
  CLOSE_CODE,
  CONNECT_PATH,
  DATA_STREAM_DEFAULTS,
  MUX_SESSION_DEFAULTS,
  PROTOCOL_NAME,
} from '@spokelink/protocol'
import type { Hello, MuxSession, MuxSessionOptions } from '@spokelink/protocol'
import { sessionRevocationReason } from '@spokelink/auth'
import type { SessionCredential, SpokesConfig } from '@spokelink/auth'
import { DataPlane } from './data-plane.js'
import { HubServices } from './hub-services.js'
import { bindServer, boundAddress } from './bind-server.js'
import { createEndpointSlicePublisher } from './endpoint-slice-publisher.js'
import type { EndpointSlicePublisher, EndpointSlicePublisherOptions } from './endpoint-slice-publisher.js'
import type { EndpointSliceApi } from './endpoint-slice-api.js'
import { ExitNodeError } from './errors.js'
import { createFleetMetrics } from './fleet-metrics.js'
import type { FleetMetrics } from './fleet-metrics.js'
import { FleetView } from './fleet-view.js'
import { TrafficMeter } from './traffic-meter.js'
import type { ExitNodeErrorCode } from './errors.js'
import { FrontDoor } from './front-door.js'
import { createExitNodeMetrics } from './metrics.js'
import type { ExitNodeMetrics } from './metrics.js'
import { answerAdminRequest, answerControlRequest } from './http-endpoints.js'
import type { Readiness } from './http-endpoints.js'
import { rejectUpgrade } from './reject-upgrade.js'
import { buildTargetGroups, isUnspecifiedHost } from './service-discovery.js'
import type { TargetGroup } from './service-discovery.js'
import { SessionRegistry } from './session-registry.js'
import { SessionSlots, maxSessionsOf } from './session-slots.js'
import { SpokeSession } from './spoke-session.js'
import type { HelloAdmission } from './spoke-session.js'
import type { ClientCertificateAuthority, ClientCertificateCheck } from './client-certificates.js'
import { clipUntrusted } from './untrusted-text.js'
import { authenticateUpgrade, offersSubprotocol } from './upgrade-auth.js'
import { startTlsAfterFirstBytes } from './tls-after-first-bytes.js'

/** Options of {@link createExitNode}; every timeout and limit is here. */
export interface ExitNodeOptions {
  /** Control-plane address. @default '127.0.0.1' */
  host?: string
  /** Control-plane port; 0 picks a free one. @default 8123 */
  port?: number
  /** Address of the operators' listener (`/metrics`, `/v1/sd`, health); keep it off the agents' network. @default '127.0.0.1' */
  adminHost?: string
  /** Port of the operators' listener; 0 picks a free one. @default 9464 */
  adminPort?: number
  /**
   * Host `/v1/sd` puts in `{host}` for a data-plane port bound to every interface. When unset: `adminHost`,
   * or this machine's hostname when that is a wildcard too. Never taken from a request.
   * @default undefined
   */
  sdHost?: string | undefined
  /** A data-plane connection with no bytes either way for this long is closed; a port's `idleTimeout` overrides it. @default 300000 */
  dataIdleTimeoutMs?: number
  /** Concurrent connections per data-plane port, more are reset at once; a port's `maxConnections` overrides it. @default 256 */
  maxConnectionsPerPort?: number
  /**
   * Streams a spoke may have open to one hub service (all its sessions together), more are refused with a reason; a
   * `hubServices` entry's `maxConnections` overrides it. @default 64
   */
  maxConnectionsPerHubService?: number
  /**
   * Largest request body on a hub service with an `allow` list (a remote write batch), streamed through and counted;
   * a larger one is refused (403 `body_too_large`). @default 16777216
   */
  maxHubRequestBodyBytes?: number
  /** On close, how long agents have to answer the WebSocket close (1001) before their sockets are cut. @default 1000 */
  closeHandshakeTimeoutMs?: number
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
  /**
   * Hello labels (an agent's `--label k=v`) that become labels of `spokelink_spoke_info` and columns of the status
   * page; any other label an agent sends is ignored, so agents cannot add series. At most 16 names. @default []
   */
  infoLabels?: readonly string[]
  /** Time a wss client has from connecting to the end of its TLS handshake. @default 10000 */
  tlsHandshakeTimeoutMs?: number
  /**
   * Start TLS on a wss connection only once its ClientHello has been read (`startTlsAfterFirstBytes`): Node then
   * keeps a small TLS read ring per socket instead of one with a 64 KiB buffer, ~50–65 KiB less RSS per session
   * that receives bursts, for smaller socket reads: ~15 % more exit-node CPU per byte received over wss (README
   * "Fleet"). For fleets of many sessions that each carry little. @default false
   */
  tlsLeanBuffers?: boolean
  /** Time a client has to send a whole request (the upgrade's headers), from connecting or from TLS. @default 10000 */
  headersTimeoutMs?: number
  /** Connections held at once whose upgrade is not accepted yet, all sources together; more are closed at accept. @default 2048 */
  maxUnauthenticatedConnections?: number
  /** The same from one source: an IPv4 address, or an IPv6 /64. @default 128 */
  maxUnauthenticatedPerSource?: number
  /** Refused upgrades a source may make in a burst; past them it is answered 429 with Retry-After. @default 10 */
  failedAuthBurst?: number
  /** A source may make one more refused upgrade after each period of this length. @default 1000 */
  failedAuthRefillMs?: number
  /** Sources whose failed-auth budget is remembered; the least recently seen is forgotten first. @default 10000 */
  maxFailedAuthSources?: number
  /** Live sessions a spoke may have when the spokes file sets neither `maxSessions` nor `maxSessionsPerSpoke`. @default 4 */
  maxSessionsPerSpoke?: number
  /** Refusals log one full line per reason per interval and then one line counting the rest. @default 10000 */
  logSampleIntervalMs?: number
  /** Peer-chosen values (headers, agent names, reasons built from their input) are cut to this length in logs. @default 128 */
  maxLogFieldChars?: number
}

type ResolvedExitNodeOptions = Required<Omit<ExitNodeOptions, 'tls' | 'sdHost'>> & Pick<ExitNodeOptions, 'tls' | 'sdHost'>

/** Defaults of {@link ExitNodeOptions}. */
export const EXIT_NODE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8123,
  adminHost: '127.0.0.1',
  adminPort: 9464,
  sdHost: undefined,
  dataIdleTimeoutMs: 300_000,
  // A hub Prometheus keeps one keep-alive connection per target, so even a few HA replicas, recording
  // rules and dashboards need tens; 256 leaves room for bursts while four ports still fit one session's 1024 streams.
  maxConnectionsPerPort: 256,
  // Prometheus remote-write runs up to max_shards (50 in 2.42) connections at once; 64 covers that with room.
  maxConnectionsPerHubService: 64,
  // Prometheus' remote write batches (max_samples_per_send 2000, snappy) are well under 1 MiB; 16 MiB leaves room for
  // large batches and metadata without letting one request run unbounded. Bodies stream, so this is no buffer.
  maxHubRequestBodyBytes: 16 * 1024 * 1024,
  closeHandshakeTimeoutMs: 1000,
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
  tlsHandshakeTimeoutMs: 10_000,
  tlsLeanBuffers: false,
  headersTimeoutMs: 10_000,
  maxUnauthenticatedConnections: 2048,
  maxUnauthenticatedPerSource: 128,
  failedAuthBurst: 10,
  failedAuthRefillMs: 1000,
  maxFailedAuthSources: 10_000,
  maxSessionsPerSpoke: 4,
  logSampleIntervalMs: 10_000,
  maxLogFieldChars: 128,
  infoLabels: [],
} satisfies ResolvedExitNodeOptions

/** Most names `infoLabels` may list: each is a label of every `spokelink_spoke_info` series. */
const MAX_INFO_LABELS = 16
const INFO_LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,62}$/

/** What {@link createExitNode} needs from its caller. */
export interface ExitNodeDeps {
  logger: Logger
  /** The prom-client registry the tunnel metrics go on and `/metrics` serves. */
  registry: Registry
  /** @default () => new Date() */
  clock?: () => Date
  /** Keep an EndpointSlice per connected spoke through this API (several replicas behind selector-less Services). */
  endpointSlices?: (EndpointSlicePublisherOptions & { api: EndpointSliceApi }) | undefined
  /**
   * Checks and issues client certificates for spokes with `requireClientCert`; needs `tls`. Without it such spokes
   * are refused (403) whatever the agent presents.
   */
  clientCertificates?: ClientCertificateAuthority | undefined
}

/** A full data-plane port logs one line per this interval (with the count), not one per refused connection. */
const REFUSAL_LOG_INTERVAL_MS = 10_000

/**
 * Node's default list with TLS_AES_128_GCM_SHA256 moved first: every session then carries its bulk data with
 * AES-128-GCM (what `ssh -c aes128-gcm` users pick for speed), which costs less CPU per byte than AES-256 with AES-NI.
 */
const TLS_CIPHERS = ['TLS_AES_128_GCM_SHA256', ...DEFAULT_CIPHERS.split(':').filter((c) => c !== 'TLS_AES_128_GCM_SHA256')].join(':')

/** Reason sent with the 1001 close on shutdown; agents log it as a planned restart. */
const SHUTDOWN_CLOSE_REASON = 'exit-node shutting down'

/** Node checks header/request timeouts on a timer; this keeps the overshoot under a tenth of the timeout (≤ 1 s). */
function connectionsCheckingIntervalMs (headersTimeoutMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(headersTimeoutMs / 10)))
}

/**
 * Validates exit-node options and fills in defaults.
 * @throws ExitNodeError SLK_ERR_EXIT_INVALID_OPTION naming the option
 */
export function validateExitNodeOptions (options: ExitNodeOptions): Readonly<ResolvedExitNodeOptions> {
  const resolved: ResolvedExitNodeOptions = { ...EXIT_NODE_DEFAULTS, ...options }
  const positive = [
    'keepaliveIntervalMs', 'keepaliveTimeoutMs', 'helloTimeoutMs', 'streamOpenTimeoutMs', 'maxMessageBytes', 'expiryCheckIntervalMs',
    'dataIdleTimeoutMs', 'maxConnectionsPerPort', 'maxConnectionsPerHubService', 'maxHubRequestBodyBytes', 'closeHandshakeTimeoutMs',
    'tlsHandshakeTimeoutMs', 'headersTimeoutMs', 'maxUnauthenticatedConnections', 'maxUnauthenticatedPerSource', 'failedAuthBurst',
    'failedAuthRefillMs', 'maxFailedAuthSources', 'maxSessionsPerSpoke', 'logSampleIntervalMs', 'maxLogFieldChars',
  ] as const
  for (const name of positive) {
    const value = resolved[name]
    if (!Number.isInteger(value) || value <= 0) {
      throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option ${name}: expected a positive integer, got ${String(value)}`)
    }
  }
  if (typeof resolved.tlsLeanBuffers !== 'boolean') {
    throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option tlsLeanBuffers: expected true or false, got ${String(resolved.tlsLeanBuffers)}`)
  }
  if (!Number.isInteger(resolved.shutdownGraceMs) || resolved.shutdownGraceMs < 0) {
    throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option shutdownGraceMs: expected an integer ≥ 0, got ${String(resolved.shutdownGraceMs)}`)
  }
  for (const name of ['port', 'adminPort'] as const) {
    const value = resolved[name]
    if (!Number.isInteger(value) || value < 0 || value > 65535) {
      throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option ${name}: expected 0–65535, got ${String(value)}`)
    }
  }
  if (resolved.infoLabels.length > MAX_INFO_LABELS || resolved.infoLabels.some((name) => !INFO_LABEL_NAME.test(name)) || new Set(resolved.infoLabels).size !== resolved.infoLabels.length) {
    throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `exit-node option infoLabels: expected at most ${MAX_INFO_LABELS} distinct label names like region or k8s_version, got ${resolved.infoLabels.join(',').slice(0, 200)}`)
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
  readonly #clientCertificates: ClientCertificateAuthority | undefined
  readonly #metrics: ExitNodeMetrics
  readonly #promRegistry: Registry
  readonly #server: http.Server
  /** The operators' listener: metrics and service discovery name every customer, so agents never reach it. */
  readonly #adminServer: http.Server
  readonly #wss: WebSocketServer
  readonly #sessions = new SessionRegistry()
  readonly #dataPlane: DataPlane
  readonly #hubServices: HubServices
  readonly #fleet: FleetView
  readonly #fleetMetrics: FleetMetrics
  readonly #endpointSlices: EndpointSlicePublisher | undefined
  /** Mux sessions past the upgrade, including those still in their hello. */
  readonly #muxes = new Set<MuxSession>()
  readonly #frontDoor: FrontDoor
  readonly #sessionSlots = new SessionSlots()
  #spokes: SpokesConfig
  #expiryTimer: NodeJS.Timeout | undefined
  #closing: Promise<void> | undefined
  #listening = false

  constructor (options: ExitNodeOptions, spokes: SpokesConfig, deps: ExitNodeDeps) {
    this.#options = validateExitNodeOptions(options)
    this.#spokes = spokes
    this.#log = deps.logger.child({ component: 'exit-node' })
    this.#clock = deps.clock ?? (() => new Date())
    this.#clientCertificates = deps.clientCertificates
    this.#promRegistry = deps.registry
    // The byte counter flushes the traffic meter before each scrape, so open connections' bytes are in it.
    const traffic: TrafficMeter = new TrafficMeter((spoke, direction, bytes) => { this.#metrics.bytesTotal.inc({ spoke, direction }, bytes) })
    const hubTraffic = new TrafficMeter((key, direction, bytes) => {
      const [spoke = '', service = ''] = key.split('/')
      this.#metrics.hubBytesTotal.inc({ spoke, service, direction: direction === 'in' ? 'to_spoke' : 'to_hub' }, bytes)
    })
    this.#metrics = createExitNodeMetrics(deps.registry, { beforeBytesScrape: () => { traffic.flush() }, beforeHubBytesScrape: () => { hubTraffic.flush() } })
    this.#fleet = new FleetView(spokes, { sessions: this.#sessions, traffic, clock: this.#clock, infoLabels: this.#options.infoLabels })
    this.#fleetMetrics = createFleetMetrics(deps.registry, this.#fleet, this.#metrics)
    const connectionsCheckingInterval = connectionsCheckingIntervalMs(this.#options.headersTimeoutMs)
    this.#frontDoor = new FrontDoor({
      ...this.#options,
      refusalCloseTimeoutMs: this.#options.headersTimeoutMs,
      unauthenticatedDeadlineMs: this.#options.headersTimeoutMs + connectionsCheckingInterval +
        (this.#options.tls === undefined ? 0 : this.#options.tlsHandshakeTimeoutMs),
    }, {
      logger: this.#log,
      registry: deps.registry,
      nowMs: () => this.#clock().getTime(),
    })
    this.#dataPlane = new DataPlane({
      streamOpenTimeoutMs: this.#options.streamOpenTimeoutMs,
      firstBytesHoldMs: DATA_STREAM_DEFAULTS.firstBytesHoldMs,
      idleTimeoutMs: this.#options.dataIdleTimeoutMs,
      maxConnectionsPerPort: this.#options.maxConnectionsPerPort,
      // The agent's control stream takes one of the session's streams for its whole life.
      streamBudget: (this.#options.mux.maxStreams ?? MUX_SESSION_DEFAULTS.maxStreams) - 1,
      refusalLogIntervalMs: REFUSAL_LOG_INTERVAL_MS,
    }, { metrics: this.#metrics, logger: deps.logger, traffic })
    this.#hubServices = new HubServices({
      headerTimeoutMs: this.#options.helloTimeoutMs,
      dialTimeoutMs: this.#options.streamOpenTimeoutMs,
      maxConnectionsPerService: this.#options.maxConnectionsPerHubService,
      maxRequestBodyBytes: this.#options.maxHubRequestBodyBytes,
      idleTimeoutMs: this.#options.dataIdleTimeoutMs,
      refusalLogIntervalMs: REFUSAL_LOG_INTERVAL_MS,
    }, { metrics: this.#metrics, logger: deps.logger, traffic: hubTraffic, spokes: () => this.#spokes })
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => { answerControlRequest(req, res, this.#readiness()) }
    const tls = this.#options.tls
    this.#server = tls === undefined
      ? http.createServer({ connectionsCheckingInterval }, onRequest)
      : https.createServer({
        cert: tls.certPem,
        key: tls.keyPem,
        ciphers: TLS_CIPHERS,
        honorCipherOrder: true,
        handshakeTimeout: this.#options.tlsHandshakeTimeoutMs,
        connectionsCheckingInterval,
        // Ask for a client certificate, never require one: the upgrade handler decides per spoke and says why.
        ...(deps.clientCertificates === undefined ? {} : { requestCert: true, rejectUnauthorized: false }),
      }, onRequest)
    // Before the front door attaches: it replaces the TLS server's own connection listener (README "Fleet": RSS per wss session).
    if (this.#server instanceof https.Server && this.#options.tlsLeanBuffers) startTlsAfterFirstBytes(this.#server, this.#options.tlsHandshakeTimeoutMs)
    this.#server.headersTimeout = this.#options.headersTimeoutMs
    this.#server.requestTimeout = this.#options.headersTimeoutMs
    this.#frontDoor.attach(this.#server)
    this.#server.on('tlsClientError', (err) => { this.#log.debug({ err }, 'tls handshake failed') })
    const adminSources = { registry: this.#promRegistry, readiness: () => this.#readiness(), targetGroups: () => this.#targetGroups(), fleet: this.#fleet, now: this.#clock }
    this.#adminServer = http.createServer((req, res) => {
      answerAdminRequest(req, res, adminSources).catch((err: unknown) => {
        this.#log.error({ err }, 'admin request failed')
        res.destroy()
      })
    })
    this.#adminServer.headersTimeout = this.#options.helloTimeoutMs
    this.#adminServer.requestTimeout = this.#options.helloTimeoutMs
    this.#adminServer.on('clientError', (_err, socket) => { socket.destroy() })
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: this.#options.maxMessageBytes,
      handleProtocols: (protocols) => protocols.has(PROTOCOL_NAME) ? PROTOCOL_NAME : false,
    })
    const slices = deps.endpointSlices
    this.#endpointSlices = slices === undefined ? undefined : createEndpointSlicePublisher(slices, { api: slices.api, sessions: this.#sessions, logger: deps.logger, registry: deps.registry })
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.#handleUpgrade(req, socket, head) })
    this.#sessions.on('spoke-online', (spoke) => {
      this.#log.info({ spoke }, 'spoke connected')
    })
    this.#sessions.on('spoke-offline', (spoke) => {
      this.#log.info({ spoke }, 'spoke disconnected')
    })
  }

  /**
   * Binds the control-plane port, then the admin port. Each logs `listening` with `listener: 'control'`
   * or `listener: 'admin'`; the control line comes first.
   * @throws ExitNodeError SLK_ERR_EXIT_LISTEN when an address is in use or not available (nothing stays bound)
   */
  async listen (): Promise<AddressInfo> {
    const { host, port, adminHost, adminPort } = this.#options
    await bindServer(this.#server, host, port)
    try {
      await bindServer(this.#adminServer, adminHost, adminPort, '--admin-listen')
    } catch (err) {
      this.#server.close()
      throw err
    }
    this.#server.on('error', (err) => { this.#log.error({ err }, 'control server failed') })
    this.#adminServer.on('error', (err) => { this.#log.error({ err }, 'admin server failed') })
    this.#listening = true
    this.#expiryTimer = setInterval(() => { this.#revalidateSessions() }, this.#options.expiryCheckIntervalMs).unref()
    this.#frontDoor.logOpenFileLimit()
    this.#endpointSlices?.start()
    const address = this.address()
    this.#log.info({ listener: 'control', address: address.address, port: address.port, tls: this.#options.tls !== undefined }, 'listening')
    const admin = this.adminAddress()
    this.#log.info({ listener: 'admin', address: admin.address, port: admin.port, tls: false }, 'listening')
    return address
  }

  /** The bound control-plane address (agents' `/connect`). */
  address (): AddressInfo {
    return boundAddress(this.#server)
  }

  /** The bound admin address (`/metrics`, `/v1/sd`). */
  adminAddress (): AddressInfo {
    return boundAddress(this.#adminServer)
  }

  #readiness (): Readiness {
    if (this.#closing !== undefined) return 'shutting down'
    return this.#listening ? 'ready' : 'starting'
  }

  /** `/v1/sd`: a wildcard data-plane bind is addressed by configuration alone, never by the request's Host header. */
  #targetGroups (): TargetGroup[] {
    const { sdHost, adminHost } = this.#options
    const wildcardHost = sdHost ?? (isUnspecifiedHost(adminHost) ? os.hostname() : adminHost)
    return buildTargetGroups(this.#spokes, (spoke) => this.#sessions.isConnected(spoke), this.#options.sdTargetTemplate, wildcardHost)
  }

  /**
   * Swaps in a reloaded spokes config. Sessions whose credential no longer holds (token revoked, expired, removed,
   * moved to another spoke, or its sha256 changed under the same id), whose spoke was removed or whose ports changed
   * are closed at once.
   */
  updateSpokes (spokes: SpokesConfig): void {
    const previous = this.#spokes
    this.#spokes = spokes
    this.#fleetMetrics.prune(this.#fleet.setSpokes(spokes))
    for (const session of this.#sessions.all()) {
      const before = previous.spokes.find((spoke) => spoke.name === session.spoke)
      const after = spokes.spokes.find((spoke) => spoke.name === session.spoke)
      if (after !== undefined && before !== undefined && JSON.stringify(before.ports) !== JSON.stringify(after.ports)) {
        this.#endSession(session, 'spoke ports changed', 'reconfigured')
      }
    }
    this.#revalidateSessions()
    this.#hubServices.revalidate(spokes)
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
    // Node skips an empty key or cert instead of failing, which would leave a context that fails every handshake:
    // a file caught mid-write (truncated, not yet written) must be refused like any bad PEM.
    if (!tls.certPem.includes('-----END') || !tls.keyPem.includes('-----END')) {
      throw new ExitNodeError('SLK_ERR_EXIT_TLS_RELOAD', 'new TLS certificate or key is empty or incomplete; the previous ones stay in use')
    }
    try {
      server.setSecureContext({ cert: tls.certPem, key: tls.keyPem, ciphers: TLS_CIPHERS, honorCipherOrder: true })
    } catch (err) {
      const why = err instanceof Error && 'code' in err ? String(err.code) : 'unusable PEM'
      throw new ExitNodeError('SLK_ERR_EXIT_TLS_RELOAD', `new TLS certificate or key rejected (${why}); the previous ones stay in use`, { cause: err })
    }
    this.#log.info('tls material reloaded')
  }

  /** The EndpointSlice publisher, when `deps.endpointSlices` was given. */
  get endpointSlices (): EndpointSlicePublisher | undefined {
    return this.#endpointSlices
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
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    this.#log.info({ sessions: this.#muxes.size }, 'shutting down')
    clearInterval(this.#expiryTimer)
    // Withdraw the spokes' EndpointSlices first, so kube-proxy stops sending scrapes here before anything drains.
    await this.#endpointSlices?.close()
    for (const mux of this.#muxes) mux.goAway('normal')
    // The control server keeps answering while streams drain: /readyz says 503 and new agents get 503.
    await this.#dataPlane.drain(this.#options.shutdownGraceMs)
    this.#server.close()
    await this.#closeWebSockets()
    await Promise.allSettled([...this.#muxes].map(async (mux) => { await mux.close({ graceMs: 0 }) }))
    this.#hubServices.destroyAll()
    for (const ws of this.#wss.clients) ws.terminate()
    this.#server.closeAllConnections()
    this.#wss.close()
    this.#adminServer.close()
    this.#adminServer.closeAllConnections()
    this.#listening = false
    this.#frontDoor.close()
    this.#log.info('shut down')
  }

  /**
   * Closes every agent's WebSocket with 1001 ("going away") and a reason, and waits up to
   * `closeHandshakeTimeoutMs` for the agents to answer: an agent then sees a planned restart, not the
   * 1006 of a dropped socket. Sockets still open after that are cut by the caller.
   */
  async #closeWebSockets (): Promise<void> {
    const open = [...this.#wss.clients]
    if (open.length === 0) return
    // The mux writes the frames of one event-loop turn in a setImmediate (the resets of streams the drain
    // just cut); let them out first, since a WebSocket that is closing refuses to send.
    await setImmediate()
    const signal = AbortSignal.timeout(this.#options.closeHandshakeTimeoutMs)
    await Promise.allSettled(open.map(async (ws) => {
      const closed = once(ws, 'close', { signal })
      ws.close(CLOSE_CODE.GOING_AWAY, SHUTDOWN_CLOSE_REASON)
      await closed
    }))
  }

  #handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A peer that resets mid-handshake must cost its own socket only.
    socket.on('error', () => { socket.destroy() })
    const remoteAddress = req.socket.remoteAddress
    if ((req.url ?? '').split('?')[0] !== CONNECT_PATH) {
      this.#frontDoor.refuseUpgrade(socket, remoteAddress, { status: 404, reason: `upgrade only on ${CONNECT_PATH}`, logReason: 'path', msg: 'upgrade refused' })
      return
    }
    if (this.#closing !== undefined) { rejectUpgrade(socket, 503, 'exit-node is shutting down', {}, this.#options.headersTimeoutMs); return }
    if (!offersSubprotocol(req, PROTOCOL_NAME)) {
      const offered = req.headers['sec-websocket-protocol'] ?? 'no subprotocol'
      this.#metrics.authFailuresTotal.inc({ reason: 'version' })
      this.#frontDoor.refuseUpgrade(socket, remoteAddress, {
        status: 400,
        reason: `exit-node speaks ${PROTOCOL_NAME}; the agent offered ${offered.slice(0, 64)}`,
        logReason: 'version',
        msg: 'agent protocol version not supported',
        fields: { offered: clipUntrusted(offered, this.#options.maxLogFieldChars) },
        headers: { 'X-Spokelink-Protocol': PROTOCOL_NAME },
      })
      return
    }
    const auth = authenticateUpgrade(req, this.#spokes, this.#clock())
    if (!auth.ok) {
      this.#metrics.authFailuresTotal.inc({ reason: auth.metricReason })
      this.#frontDoor.refuseUpgrade(socket, remoteAddress, { status: auth.status, reason: auth.reason, logReason: auth.metricReason, msg: 'agent refused', fields: { tokenId: auth.tokenId } })
      return
    }
    const certificate = this.#checkClientCertificate(req, auth.spoke, auth.tokenId)
    if (!certificate.ok) {
      this.#metrics.authFailuresTotal.inc({ reason: certificate.metricReason })
      this.#frontDoor.refuseUpgrade(socket, remoteAddress, { status: certificate.status, reason: certificate.reason, logReason: certificate.metricReason, msg: 'agent refused' })
      return
    }
    const maxSessions = maxSessionsOf(this.#spokes, auth.spoke, this.#options.maxSessionsPerSpoke)
    // Over the session cap is refused like any other failed attempt: a source out of budget gets 429 before any upgrade work.
    if (this.#sessionSlots.count(auth.spoke) >= maxSessions && this.#frontDoor.throttled(socket, remoteAddress)) return
    const remotePort = req.socket.remotePort
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#frontDoor.upgradeAccepted(remoteAddress, remotePort)
      if (!this.#sessionSlots.tryTake(auth.spoke, maxSessions)) {
        this.#refuseSession(ws, auth.spoke, auth.tokenId, remoteAddress, maxSessions)
        return
      }
      this.#startSession(ws, { spoke: auth.spoke, tokenId: auth.tokenId, tokenSha256: auth.tokenSha256, ...(certificate.certSerial === undefined ? {} : { certSerial: certificate.certSerial }) }, remoteAddress)
    })
  }

  /** The client-certificate decision for a verified token (spokes with `requireClientCert`). */
  #checkClientCertificate (req: IncomingMessage, spokeName: string, tokenId: string): ClientCertificateCheck {
    const spoke = this.#spokes.spokes.find((candidate) => candidate.name === spokeName)
    const token = spoke?.tokens.find((candidate) => candidate.id === tokenId)
    if (spoke === undefined || token === undefined || spoke.requireClientCert !== true) return { ok: true }
    if (this.#clientCertificates === undefined) {
      return { ok: false, status: 403, reason: 'spoke requires a client certificate and this exit-node has no client CA (--auto-tls or --client-ca-cert)', metricReason: 'cert_unavailable' }
    }
    return this.#clientCertificates.check(req.socket, spoke, token, this.#clock())
  }

  /** Closes an upgraded WebSocket of a spoke already at its session cap with 4429 and the reason. */
  #refuseSession (ws: WebSocket, spoke: string, tokenId: string, remoteAddress: string | undefined, maxSessions: number): void {
    const reason = `spoke ${spoke} is at its session limit (${maxSessions})`
    this.#frontDoor.sessionRefused()
    const code: ExitNodeErrorCode = 'SLK_ERR_EXIT_SESSION_LIMIT'
    this.#frontDoor.sampler.log(this.#log, 'warn', 'session_limit', { code, spoke, tokenId, remoteAddress, maxSessions }, 'session refused')
    ws.on('error', () => { /* the agent may reset instead of answering the close */ })
    ws.close(CLOSE_CODE.SESSION_LIMIT, reason)
    // The close handshake gets a second; then the socket goes whatever the agent does.
    const timer = setTimeout(() => { ws.terminate() }, 1000).unref()
    ws.once('close', () => { clearTimeout(timer) })
  }

  /** Runs one agent connection; called synchronously on upgrade so no message is lost. */
  #startSession (ws: WebSocket, credential: SessionCredential, remoteAddress: string | undefined): void {
    const { spoke } = credential
    const session = new SpokeSession(ws, credential, remoteAddress, {
      mux: { ...this.#options.mux, keepaliveIntervalMs: this.#options.keepaliveIntervalMs, keepaliveTimeoutMs: this.#options.keepaliveTimeoutMs },
      keepaliveIntervalMs: this.#options.keepaliveIntervalMs,
      helloTimeoutMs: this.#options.helloTimeoutMs,
      maxLogFieldChars: this.#options.maxLogFieldChars,
    }, {
      logger: this.#log,
      admit: (candidate, hello) => this.#admitHello(candidate, hello),
      dataPlane: this.#dataPlane,
      register: (ready) => { this.#sessions.add(ready) },
      serveAgentStream: (ready, stream) => { void this.#hubServices.serve(ready, stream) },
    })
    const { mux } = session
    this.#muxes.add(mux)
    session.on('close', (err, ready) => {
      this.#muxes.delete(mux)
      this.#sessionSlots.release(spoke)
      if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('SLK_ERR_MUX_') &&
        err.code !== 'SLK_ERR_MUX_TRANSPORT_CLOSED' && err.code !== 'SLK_ERR_MUX_SESSION_CLOSED') {
        this.#metrics.muxProtocolErrorsTotal.inc({ spoke })
      }
      if (!ready) return
      this.#sessions.remove(session)
      this.#dataPlane.detach(session)
    })
    session.on('ready', () => {
      this.#fleet.sessionOpened(session)
      this.#fleetMetrics.sessionOpensTotal.inc({ spoke })
      this.#warnOnOtherSources(session, session.log)
    })
  }

  /**
   * Agent replicas of one spoke usually leave through one NAT; a live session of the same spoke from another
   * address is what a copied token looks like, so it is worth a warn line (one per session open, which the session
   * cap bounds).
   */
  #warnOnOtherSources (session: SpokeSession, log: Logger): void {
    const others = this.#sessions.sessionsOf(session.spoke).filter((other) => other !== session && other.remoteAddress !== session.remoteAddress)
    if (others.length === 0) return
    const otherSessions = others.slice(0, 4).map((other) => ({ sessionId: other.sessionId, tokenId: other.tokenId, remoteAddress: other.remoteAddress }))
    log.warn({ remoteAddress: session.remoteAddress, otherSessions, sameToken: others.some((other) => other.tokenId === session.tokenId) }, 'spoke has live sessions from another source address')
  }

  /** Decides a parsed hello against the spokes file as it is now. */
  #admitHello (session: SpokeSession, hello: Hello): HelloAdmission {
    const config = this.#spokes.spokes.find((candidate) => candidate.name === session.spoke)
    const revoked = sessionRevocationReason(this.#spokes, session, this.#clock())
    if (config === undefined || revoked !== undefined) return { ok: false, reason: revoked ?? 'spoke removed' }
    const offered = new Set(hello.upstreams)
    const certificates = config.requireClientCert === true ? this.#clientCertificates : undefined
    return {
      ok: true,
      wanted: config.ports.filter((port) => offered.has(port.upstream)),
      missing: config.ports.filter((port) => !offered.has(port.upstream)).map((port) => port.upstream),
      hubServices: (config.hubServices ?? []).map((service) => service.name),
      issueCertificate: certificates === undefined ? undefined : async (ready, csrPem) => this.#issueClientCertificate(certificates, ready, csrPem),
    }
  }

  async #issueClientCertificate (certificates: ClientCertificateAuthority, session: SpokeSession, csrPem: string): Promise<{ certPem: string, serial: string, notAfter: Date }> {
    const issued = await certificates.issue(session, csrPem, this.#clock())
    // The edit is ours: apply it now rather than when the file watch sees it, so the bootstrap is single-use at once.
    this.updateSpokes(issued.spokes)
    return issued
  }

  #revalidateSessions (): void {
    const now = this.#clock()
    for (const session of this.#sessions.all()) {
      const reason = sessionRevocationReason(this.#spokes, session, now)
      if (reason !== undefined) this.#endSession(session, reason)
    }
  }

  /**
   * Ends a live session: `revoked` when its credential no longer holds (close 4403), `reconfigured` when its spoke's
   * ports changed and the agent only has to reconnect for the new ones (close 1012, a routine event, not a refusal).
   */
  #endSession (session: SpokeSession, reason: string, kind: 'revoked' | 'reconfigured' = 'revoked'): void {
    this.#log.info({ spoke: session.spoke, sessionId: session.sessionId, tokenId: session.tokenId, reason }, kind === 'revoked' ? 'session revoked' : 'session reconfigured')
    this.#sessions.remove(session)
    this.#dataPlane.detach(session)
    session.disconnect(reason, kind === 'revoked' ? CLOSE_CODE.REVOKED : CLOSE_CODE.RECONFIGURED)
  }
}

/**
 * Creates an exit-node; call `listen()` to bind it.
 * @throws ExitNodeError SLK_ERR_EXIT_INVALID_OPTION
 */
export function createExitNode (options: ExitNodeOptions, spokes: SpokesConfig, deps: ExitNodeDeps): ExitNode {
  return new ExitNode(options, spokes, deps)
}
