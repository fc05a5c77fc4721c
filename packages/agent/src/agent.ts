import { EventEmitter, once } from 'node:events'
import os from 'node:os'
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import {
  CLOSE_CODE,
  DATA_STREAM_ACCEPTOR_MUX_OPTIONS,
  STREAM_STATUS,
  acceptDataStream,
  createMuxSession,
  parseWelcome,
  readFramedJson,
  writeFramedJson,
  PROTOCOL_VERSION,
  ReadBufferPool,
  sharedReadBufferPool,
} from '@spokelink/protocol'
import type { GrantedPort, Hello, MuxSession, MuxSessionOptions, MuxStream, ReadBufferPoolOptions } from '@spokelink/protocol'
import { CLIENT_CERT_DEFAULTS, isSha256Hex, parseSpokeToken } from '@spokelink/auth'
import { PolicyProxy } from '@spokelink/http-policy'
import type { HttpPolicy, PolicyProxyOptions } from '@spokelink/http-policy'
import type { ClientIdentity } from './client-identity.js'
import { Backoff } from './backoff.js'
import type { BackoffOptions } from './backoff.js'
import { connectExitNode, checkServerUrl } from './connect-exit-node.js'
import { AgentError } from './errors.js'
import { DenialLog } from './denial-log.js'
import { createAgentMetrics } from './metrics.js'
import type { AgentMetrics } from './metrics.js'
import { permanentFailureOf, errorCode } from './permanent-failure.js'
import type { PermanentFailure } from './permanent-failure.js'
import { AGENT_VERSION } from './version.js'
import { dialUpstream } from './upstreams.js'
import { HubServiceListeners } from './hub-service-listener.js'
import type { HubServiceListen, HubServiceListenerOptions, HubSession } from './hub-service-listener.js'
import type { Upstream } from './upstreams.js'

/** Options of {@link createAgent}. */
export interface AgentOptions {
  /** Exit-node URL, `wss://hub.example.com/connect`. */
  server: string
  /** The spoke token `slk_<id>_<secret>`; sent only in the Authorization header. */
  token: string
  /** The only upstreams this agent will ever dial. */
  upstreams: Upstream[]
  /** Extra CA certificates (PEM) to trust. @default undefined */
  caPem?: string | undefined
  /** Pinned CA SHA-256 (from a join token). @default undefined */
  caSha256?: string | undefined
  /** Allow plain ws:// to a non-loopback host. @default false */
  insecure?: boolean
  /** Name shown in the exit-node's logs. @default os.hostname() */
  agentName?: string
  /** Labels sent in the hello. @default {} */
  labels?: Record<string, string>
  /** Ping interval on the mux and the WebSocket. @default 15000 */
  keepaliveIntervalMs?: number
  /** A pong this late closes the session. @default 30000 */
  keepaliveTimeoutMs?: number
  /** WebSocket (and TLS) handshake deadline. @default 10000 */
  handshakeTimeoutMs?: number
  /** Deadline for the exit-node's welcome and for each stream header. @default 10000 */
  helloTimeoutMs?: number
  /** Deadline for dialing an upstream. @default 5000 */
  upstreamConnectTimeoutMs?: number
  /** Largest WebSocket message accepted. @default 4194304 */
  maxMessageBytes?: number
  /** Reconnect backoff. @default BACKOFF_DEFAULTS */
  backoff?: BackoffOptions
  /**
   * Cap of the backoff after a refusal only an operator can fix (401/403 token, CA pin mismatch, protocol
   * version): retries grow towards it so a fleet with a revoked token does not hammer the hub. @default 300000
   */
  permanentFailureMaxDelayMs?: number
  /** Agent software version sent in the hello. @default this package's version */
  agentVersion?: string
  /** Multiplexer options. @default {} */
  mux?: MuxSessionOptions
  /** HTTP policies (`--read-only`, `--allow`): a stream to one of these upstreams is parsed and checked request by request. @default [] */
  policies?: readonly HttpPolicy[]
  /** Limits of the policy proxy (header and body sizes, upstream sockets). @default {} */
  policy?: PolicyProxyOptions
  /** Refused requests are logged at warn at most once per this interval and upstream (each at debug). @default 60000 */
  policyLogIntervalMs?: number
  /** The key and certificate kept in `--state-dir`, for spokes with `requireClientCert`. @default undefined */
  clientIdentity?: ClientIdentity | undefined
  /** Renew the client certificate over the live session when less than this is left. @default 172800000 (2 days) */
  clientCertRenewBeforeMs?: number
  /** How often a live session checks whether the client certificate is due for renewal. @default 3600000 */
  clientCertCheckIntervalMs?: number
  /** Deadline for the exit-node's answer to a certificate request. @default 10000 */
  certRequestTimeoutMs?: number
  /** `--hub-service NAME=LISTEN`: local listeners whose connections are carried to the hub's named services. @default [] */
  hubServices?: readonly HubServiceListen[]
  /** Limits of the hub-service listeners (connections per service, status deadline). @default {} */
  hubService?: HubServiceListenerOptions
  /**
   * The buffers upstream sockets read into, reused once the WebSocket took their bytes. Unset: the process's
   * shared pool (`sharedReadBufferPool()`); set: a pool of this agent's own. @default READ_BUFFER_POOL_DEFAULTS
   */
  readBuffers?: ReadBufferPoolOptions
}

/** Agent defaults for the optional settings. */
export const AGENT_DEFAULTS = {
  caPem: undefined,
  caSha256: undefined,
  insecure: false,
  labels: {},
  keepaliveIntervalMs: 15_000,
  keepaliveTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  helloTimeoutMs: 10_000,
  upstreamConnectTimeoutMs: 5000,
  maxMessageBytes: 4 * 1024 * 1024,
  backoff: {},
  permanentFailureMaxDelayMs: 300_000,
  agentVersion: AGENT_VERSION,
  mux: {},
  policies: [],
  policy: {},
  policyLogIntervalMs: 60_000,
  clientIdentity: undefined,
  clientCertRenewBeforeMs: CLIENT_CERT_DEFAULTS.renewBeforeMs,
  clientCertCheckIntervalMs: 3_600_000,
  certRequestTimeoutMs: 10_000,
  hubServices: [],
  hubService: {},
  readBuffers: {},
} as const

type ResolvedAgentOptions = Omit<Required<AgentOptions>, 'caPem' | 'caSha256' | 'clientIdentity'> & Pick<AgentOptions, 'caPem' | 'caSha256' | 'clientIdentity'>

/** What {@link Agent.checkClientCertificate} did. */
export type ClientCertificateOutcome = 'issued' | 'renewed' | 'current' | 'failed' | 'no-session'

/** The agent's connection state. */
export type AgentState = 'connecting' | 'connected' | 'backoff' | 'stopped'

/** Events an {@link Agent} emits. */
export interface AgentEvents {
  state: [state: AgentState]
  /** The exit-node accepted the hello. */
  connected: [info: { spoke: string, ports: GrantedPort[] }]
  /** A connection attempt failed or a session ended. */
  disconnected: [err: Error | undefined]
}

/**
 * Validates agent options.
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION naming the option, SLK_ERR_AGENT_INSECURE
 */
export function validateAgentOptions (options: AgentOptions): Readonly<ResolvedAgentOptions> {
  const resolved: ResolvedAgentOptions = { ...AGENT_DEFAULTS, agentName: os.hostname(), ...options }
  checkServerUrl(resolved.server, resolved.insecure)
  if (resolved.upstreams.length === 0) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', '--upstream: at least one NAME=HOST:PORT is needed')
  const names = new Set<string>()
  for (const upstream of resolved.upstreams) {
    if (names.has(upstream.name)) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--upstream: "${upstream.name}" is given twice`)
    names.add(upstream.name)
  }
  for (const policy of resolved.policies) {
    if (!names.has(policy.upstream)) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--read-only/--allow: "${policy.upstream}" is not an --upstream of this agent`)
  }
  for (const name of ['keepaliveIntervalMs', 'keepaliveTimeoutMs', 'handshakeTimeoutMs', 'helloTimeoutMs', 'upstreamConnectTimeoutMs', 'maxMessageBytes', 'policyLogIntervalMs', 'clientCertRenewBeforeMs', 'clientCertCheckIntervalMs', 'certRequestTimeoutMs', 'permanentFailureMaxDelayMs'] as const) {
    const value = resolved[name]
    if (!Number.isInteger(value) || value <= 0) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `agent option ${name}: expected a positive integer, got ${String(value)}`)
  }
  for (const [name, value] of Object.entries(resolved.backoff)) {
    if (!Number.isInteger(value) || value <= 0) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `agent option backoff.${name}: expected a positive integer, got ${String(value)}`)
  }
  const hubNames = new Set<string>()
  for (const hub of resolved.hubServices) {
    if (hubNames.has(hub.name)) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--hub-service: "${hub.name}" is given twice`)
    hubNames.add(hub.name)
  }
  for (const [name, value] of Object.entries({ ...resolved.policy, ...resolved.hubService })) {
    if (!Number.isInteger(value) || value <= 0) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `agent option policy.${name}: expected a positive integer, got ${String(value)}`)
  }
  for (const [name, value] of Object.entries(resolved.readBuffers)) {
    // No free buffer kept (0) is allowed: every read then allocates, as without the pool.
    const least = name === 'maxPooledReadBuffers' ? 0 : 1
    if (!Number.isInteger(value) || value < least) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `agent option readBuffers.${name}: expected an integer ≥ ${least}, got ${String(value)}`)
  }
  if (resolved.caSha256 !== undefined && !isSha256Hex(resolved.caSha256)) {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', 'CA pin: expected 64 hex characters (sha256 of the CA certificate)')
  }
  return Object.freeze(resolved)
}

/**
 * The spoke side: dials out to the exit-node, keeps the session alive, reconnects with backoff and
 * full jitter, and serves each data stream by dialing only the named, allow-listed upstream.
 */
export class Agent extends EventEmitter<AgentEvents> {
  readonly #options: Readonly<ResolvedAgentOptions>
  readonly #log: Logger
  readonly #metrics: AgentMetrics
  readonly #backoff: Backoff
  /** Backoff after permanent refusals: same jitter, a cap of `permanentFailureMaxDelayMs`. */
  readonly #permanentBackoff: Backoff
  #permanentFailure: PermanentFailure | undefined
  readonly #upstreams: Map<string, Upstream>
  /** One proxy per upstream under an HTTP policy; streams to other upstreams are relayed as bytes. */
  readonly #policyProxies = new Map<string, PolicyProxy>()
  readonly #readBuffers: ReadBufferPool
  readonly #denials: DenialLog
  readonly #stop = new AbortController()
  #mux: MuxSession | undefined
  /** The session's control stream: open for the session's life, so close() must not wait for it to drain. */
  #control: MuxStream | undefined
  #running: Promise<void> | undefined
  #state: AgentState = 'stopped'
  /** The last failure logged, so a retry storm with the same cause logs one line. */
  #lastFailure = ''
  /** The token the next connection attempt presents; {@link Agent.setToken} swaps it (SIGHUP re-reads --token-file). */
  #token: string
  readonly #now: () => number
  /** The live session's control stream and identity, while its spoke requires a client certificate. */
  #certificateSession: { control: MuxStream, spoke: string, tokenId: string } | undefined
  #certificateCheck: Promise<ClientCertificateOutcome> = Promise.resolve('no-session')
  readonly #hubListeners: HubServiceListeners
  /** The live session, once welcomed, for the hub-service listeners. */
  #hubSession: HubSession | undefined

  constructor (options: AgentOptions, deps: { logger: Logger, registry: Registry, rng?: () => number, now?: () => number }) {
    super()
    this.#options = validateAgentOptions(options)
    this.#log = deps.logger.child({ component: 'agent' })
    this.#metrics = createAgentMetrics(deps.registry)
    this.#backoff = new Backoff(this.#options.backoff, { rng: deps.rng, now: deps.now })
    this.#permanentBackoff = new Backoff({ ...this.#options.backoff, maxDelayMs: this.#options.permanentFailureMaxDelayMs }, { rng: deps.rng, now: deps.now })
    this.#token = this.#options.token
    this.#now = deps.now ?? Date.now
    this.#upstreams = new Map(this.#options.upstreams.map((upstream) => [upstream.name, upstream]))
    // Default sizes: the process's one pool, so a process running many agents keeps one set of free buffers.
    this.#readBuffers = Object.keys(this.#options.readBuffers).length === 0 ? sharedReadBufferPool() : new ReadBufferPool(this.#options.readBuffers)
    this.#denials = new DenialLog(this.#log, { intervalMs: this.#options.policyLogIntervalMs, now: deps.now })
    for (const policy of this.#options.policies) {
      const upstream = this.#upstreams.get(policy.upstream)
      if (upstream === undefined) continue
      this.#policyProxies.set(policy.upstream, new PolicyProxy(policy, this.#options.policy, {
        target: upstream,
        subject: `upstream ${policy.upstream}`,
        onDenied: (denial) => {
          this.#metrics.policyDeniedTotal.inc({ upstream: policy.upstream, reason: denial.reason })
          this.#denials.record({ upstream: policy.upstream, ...denial })
        },
        onTargetError: () => { this.#metrics.upstreamDialErrorsTotal.inc({ upstream: policy.upstream }) },
        logger: this.#log,
      }))
    }
    this.#hubListeners = new HubServiceListeners(this.#options.hubServices, this.#options.hubService, {
      logger: this.#log,
      metrics: this.#metrics,
      session: () => this.#hubSession,
      now: deps.now,
    })
  }

  /**
   * Binds the `--hub-service` listeners (none: nothing to do). Call before {@link Agent.start}; connections that arrive
   * before the session is welcomed are reset at once.
   * @throws AgentError SLK_ERR_AGENT_LISTEN naming the service and address
   */
  async listenHubServices (): Promise<void> {
    await this.#hubListeners.listen()
  }

  /** The bound `--hub-service` addresses by name (port 0 resolved). */
  get hubServiceAddresses (): Record<string, { host: string, port: number }> {
    return this.#hubListeners.addresses()
  }

  /** Current connection state. */
  get state (): AgentState {
    return this.#state
  }

  /** Set while the exit-node refuses this agent for a reason retrying cannot fix; cleared by the next session. */
  get permanentFailure (): PermanentFailure | undefined {
    return this.#permanentFailure
  }

  /**
   * Replaces the token for the next connection attempt (a rotated `--token-file`); the live session, authenticated
   * with the old token, carries on until it ends.
   * @throws AuthError SLK_ERR_AUTH_TOKEN_MALFORMED when `token` is not `slk_<id>_<secret>` (the old token stays)
   */
  setToken (token: string): void {
    parseSpokeToken(token)
    this.#token = token
  }

  /**
   * Asks the exit-node for a client certificate over the live session when the spoke requires one and the agent
   * holds none, or less than `clientCertRenewBeforeMs` is left (at the injected clock). Runs on connect and every
   * `clientCertCheckIntervalMs`; one check at a time. A refusal or timeout is logged and retried at the next check.
   */
  async checkClientCertificate (): Promise<ClientCertificateOutcome> {
    const next = this.#certificateCheck.then(async () => this.#checkClientCertificateOnce())
    this.#certificateCheck = next.catch(() => 'failed' as const)
    return next
  }

  async #checkClientCertificateOnce (): Promise<ClientCertificateOutcome> {
    const session = this.#certificateSession
    const identity = this.#options.clientIdentity
    if (session === undefined || identity === undefined) return 'no-session'
    if (!identity.needsCertificate(this.#now(), this.#options.clientCertRenewBeforeMs)) return 'current'
    const renewal = identity.tls !== undefined
    try {
      const issued = await identity.request(session.control, { spoke: session.spoke, tokenId: session.tokenId }, this.#options.certRequestTimeoutMs)
      this.#log.info({ serial: issued.serial, notAfter: issued.notAfter, renewal }, 'client certificate stored; the next connection presents it')
      return renewal ? 'renewed' : 'issued'
    } catch (err) {
      this.#log.error({ err, code: err instanceof AgentError ? err.code : undefined }, 'client certificate request failed; retrying at the next check')
      return 'failed'
    }
  }

  /** Starts connecting; reconnects until {@link Agent.close}. */
  start (): void {
    this.#running ??= this.#run()
  }

  /** Stops reconnecting, lets open streams finish for up to `graceMs`, and closes the session. Idempotent. */
  async close (options: { graceMs?: number } = {}): Promise<void> {
    this.#stop.abort()
    await this.#hubListeners.close()
    // The grace is for data streams; the idle control stream would otherwise hold close() for all of it.
    this.#control?.destroy()
    await this.#mux?.close({ graceMs: options.graceMs ?? 5000 })
    await this.#running
    for (const proxy of this.#policyProxies.values()) proxy.close()
    this.#denials.close()
    this.#setState('stopped')
  }

  #setState (state: AgentState): void {
    if (state === this.#state) return
    this.#state = state
    this.#metrics.connected.set(state === 'connected' ? 1 : 0)
    this.emit('state', state)
  }

  async #run (): Promise<void> {
    let attempts = 0
    while (!this.#stop.signal.aborted) {
      if (attempts++ > 0) this.#metrics.reconnectsTotal.inc()
      this.#setState('connecting')
      let failure: Error | undefined
      try {
        await this.#runSession()
      } catch (err) {
        failure = err instanceof Error ? err : new Error(String(err))
      }
      if (this.#stop.signal.aborted) break
      this.emit('disconnected', failure)
      this.#recordFailure(failure)
      // 1001/1012 after the hello: the exit-node ended the session on purpose (a restart, new ports).
      const planned = failure instanceof AgentError && (failure.code === 'SLK_ERR_AGENT_SERVER_RESTARTING' || failure.code === 'SLK_ERR_AGENT_RECONFIGURED')
      const waitMs = (this.#permanentFailure === undefined ? this.#backoff : this.#permanentBackoff).nextDelayMs({ planned })
      this.#logFailure(failure, waitMs)
      this.#setState('backoff')
      await delay(waitMs, undefined, { signal: this.#stop.signal }).catch(() => {
        // Aborted by close(): the loop condition ends it.
      })
    }
  }

  #recordFailure (failure: Error | undefined): void {
    this.#metrics.lastConnectError.reset()
    this.#metrics.lastConnectError.set({ code: errorCode(failure) ?? (failure === undefined ? 'session_ended' : 'unknown') }, 1)
    this.#permanentFailure = permanentFailureOf(failure)
    this.#metrics.permanentFailure.set(this.#permanentFailure === undefined ? 0 : 1)
  }

  #logFailure (failure: Error | undefined, retryInMs: number): void {
    const summary = failure === undefined ? 'session ended' : `${'code' in failure ? String(failure.code) : failure.name}: ${failure.message}`
    if (summary === this.#lastFailure) {
      this.#log.debug({ retryInMs, attempt: this.#backoff.attempt }, 'reconnecting')
      return
    }
    this.#lastFailure = summary
    // A refused token or an unreachable hub is an expected condition: the code and message say it all, a stack does not.
    const fields = { retryInMs, attempt: this.#backoff.attempt, code: failure !== undefined && 'code' in failure ? failure.code : undefined, reason: failure?.message }
    // A planned restart is lifecycle, not a fault: info, and a message of its own so alerts on 'disconnected' stay quiet.
    // Error, once per distinct cause: only an operator can fix it, and retries will keep failing until then.
    if (this.#permanentFailure !== undefined) this.#log.error({ ...fields, permanent: true, hint: 'only an operator can fix this (token, CA pin or protocol version); retrying slowly' }, 'disconnected')
    else if (failure instanceof AgentError && failure.code === 'SLK_ERR_AGENT_SERVER_RESTARTING') this.#log.info({ ...fields, closeCode: CLOSE_CODE.GOING_AWAY }, 'exit-node restarting')
    else if (failure instanceof AgentError && failure.code === 'SLK_ERR_AGENT_RECONFIGURED') this.#log.info({ ...fields, closeCode: CLOSE_CODE.RECONFIGURED }, 'session reconfigured')
    else if (failure === undefined) this.#log.info(fields, 'disconnected')
    else this.#log.warn(fields, 'disconnected')
  }

  async #runSession (): Promise<void> {
    const options = this.#options
    const { ws, duplex } = await connectExitNode({
      url: options.server,
      token: this.#token,
      caPem: options.caPem,
      caSha256: options.caSha256,
      insecure: options.insecure,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      maxMessageBytes: options.maxMessageBytes,
      signal: this.#stop.signal,
      clientTls: options.clientIdentity?.tls,
    })
    const sessionTokenId = parseSpokeToken(this.#token).id
    let closeReason = ''
    let closeText = ''
    let closeCode: number | undefined
    ws.once('close', (code: number, reason: Buffer) => {
      closeCode = code
      closeText = reason.toString('utf8')
      closeReason = reason.length > 0 ? `${code} ${closeText}` : String(code)
    })
    // 1001 "going away" is how an exit-node ends sessions on a graceful shutdown (after its GoAway).
    const plannedRestart = (cause: unknown): AgentError | undefined => closeCode === CLOSE_CODE.GOING_AWAY
      ? new AgentError('SLK_ERR_AGENT_SERVER_RESTARTING', `exit-node closed the session for a restart (websocket close ${closeReason})`, { cause })
      : closeCode === CLOSE_CODE.RECONFIGURED
        ? new AgentError('SLK_ERR_AGENT_RECONFIGURED', `exit-node asked for a reconnect (websocket close ${closeReason})`, { cause })
        : undefined
    const mux = createMuxSession(duplex, 'client', {
      ...DATA_STREAM_ACCEPTOR_MUX_OPTIONS,
      ...options.mux,
      keepaliveIntervalMs: options.keepaliveIntervalMs,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs,
    }, { logger: this.#log })
    this.#mux = mux
    const closed = once(mux, 'close') as Promise<[Error | undefined]>
    mux.on('stream', (stream: MuxStream) => { void this.#serveStream(stream) })
    mux.on('rtt', (rttMs: number) => { this.#metrics.sessionRttSeconds.set(rttMs / 1000) })
    const wsPing = setInterval(() => { ws.ping() }, options.keepaliveIntervalMs).unref()
    let certificateTimer: NodeJS.Timeout | undefined
    try {
      const control = mux.openStream()
      this.#control = control
      control.on('error', (err) => { this.#log.debug({ err }, 'control stream closed') })
      const hello: Hello = { version: PROTOCOL_VERSION, agent: options.agentName, agentVersion: options.agentVersion, upstreams: [...this.#upstreams.keys()], labels: options.labels }
      writeFramedJson(control, hello)
      const welcome = parseWelcome(await readFramedJson(control, { signal: AbortSignal.any([AbortSignal.timeout(options.helloTimeoutMs), this.#stop.signal]) }))
      if (!welcome.ok) throw new AgentError('SLK_ERR_AGENT_HELLO_REJECTED', `exit-node refused the hello: ${welcome.error}`)
      // A spoke with requireClientCert: the control stream then carries certificate requests and their answers.
      if (welcome.clientCert === 'required' && options.clientIdentity !== undefined) {
        this.#certificateSession = { control, spoke: welcome.spoke, tokenId: sessionTokenId }
        certificateTimer = setInterval(() => { void this.checkClientCertificate() }, options.clientCertCheckIntervalMs).unref()
      } else {
        if (welcome.clientCert === 'required') this.#log.warn({ spoke: welcome.spoke }, 'spoke requires a client certificate; start the agent with --state-dir to get one')
        control.resume()
      }
      this.#hubSession = { mux, supported: welcome.hubServices !== undefined }
      this.#checkHubServices(welcome.hubServices)
      this.#backoff.connected()
      this.#permanentBackoff.connected()
      this.#lastFailure = ''
      this.#permanentFailure = undefined
      this.#metrics.permanentFailure.set(0)
      this.#metrics.lastConnectError.reset()
      this.#setState('connected')
      this.#log.info({ spoke: welcome.spoke, ports: welcome.ports, server: new URL(options.server).host }, 'connected')
      this.emit('connected', { spoke: welcome.spoke, ports: welcome.ports })
      if (this.#certificateSession !== undefined) void this.checkClientCertificate()
      const [err] = await closed
      if (this.#stop.signal.aborted) return
      const restart = plannedRestart(err)
      if (restart !== undefined) throw restart
      throw new AgentError('SLK_ERR_AGENT_CONNECT', `session ended${closeReason === '' ? '' : ` (websocket close ${closeReason})`}${err === undefined ? '' : `: ${err.message}`}`, { cause: err })
    } catch (err) {
      mux.abort(err instanceof Error ? err : undefined)
      if (err instanceof AgentError && (err.code === 'SLK_ERR_AGENT_SERVER_RESTARTING' || err.code === 'SLK_ERR_AGENT_RECONFIGURED')) throw err
      const restart = plannedRestart(err)
      if (restart !== undefined) throw restart
      if (closeCode === CLOSE_CODE.REVOKED) {
        throw new AgentError('SLK_ERR_AGENT_FORBIDDEN', `exit-node closed the session: ${closeText}`, { cause: err })
      }
      throw err
    } finally {
      clearInterval(wsPing)
      clearInterval(certificateTimer)
      this.#certificateSession = undefined
      this.#hubSession = undefined
      this.#mux = undefined
      this.#control = undefined
    }
  }

  /** One line per session when a `--hub-service` cannot work: the exit-node is older, or does not list it for this spoke. */
  #checkHubServices (offered: readonly string[] | undefined): void {
    const wanted = this.#options.hubServices.map((hub) => hub.name)
    if (wanted.length === 0) return
    if (offered === undefined) {
      this.#log.warn({ hubServices: wanted }, 'exit-node does not serve hub services (an older version); --hub-service connections will be refused')
      return
    }
    const missing = wanted.filter((name) => !offered.includes(name))
    if (missing.length > 0) this.#log.warn({ missing, offered }, 'exit-node lists no hubServices entry for these --hub-service names; their connections will be refused')
  }

  async #serveStream (stream: MuxStream): Promise<void> {
    const timeoutMs = this.#options.helloTimeoutMs
    let accepted
    try {
      // The header arrives with the SYN; a stream without one is reset after helloTimeoutMs.
      accepted = await acceptDataStream(stream, {
        headerTimeoutMs: timeoutMs,
        headerTimeoutError: () => new AgentError('SLK_ERR_AGENT_STREAM_HEADER', `no stream header within ${timeoutMs} ms`),
      })
    } catch (err) {
      this.#log.warn({ streamId: stream.id, err }, 'bad stream header')
      return
    }
    const name = accepted.upstream
    const upstream = this.#upstreams.get(name)
    if (upstream === undefined) {
      this.#metrics.streamsTotal.inc({ upstream: 'unknown', result: 'refused' })
      this.#log.warn({ streamId: stream.id, upstream: name }, 'exit-node asked for an upstream this agent does not offer')
      accepted.refuse(STREAM_STATUS.UNKNOWN_UPSTREAM, `upstream "${name}" is not offered by this agent`)
      return
    }
    const proxy = this.#policyProxies.get(name)
    if (proxy !== undefined) {
      accepted.accept()
      this.#servePolicyStream(stream, name, proxy)
      return
    }
    let socket
    try {
      socket = await dialUpstream(upstream, { timeoutMs: this.#options.upstreamConnectTimeoutMs, readBufferPool: this.#readBuffers })
    } catch (err) {
      this.#metrics.upstreamDialErrorsTotal.inc({ upstream: name })
      this.#metrics.streamsTotal.inc({ upstream: name, result: 'dial_failed' })
      this.#log.debug({ streamId: stream.id, upstream: name, err }, 'upstream dial failed')
      accepted.refuse(STREAM_STATUS.DIAL_FAILED, `cannot reach upstream ${name}: ${err instanceof Error ? err.message : String(err)}`)
      return
    }
    this.#metrics.streamsActive.inc({ upstream: name })
    const failure = await accepted.relay(socket)
    this.#metrics.streamsActive.dec({ upstream: name })
    this.#metrics.streamsTotal.inc({ upstream: name, result: failure === undefined ? 'ok' : 'aborted' })
    if (this.#log.isLevelEnabled('debug')) this.#log.debug({ streamId: stream.id, upstream: name, err: failure }, 'stream closed')
  }

  /**
   * A stream under an HTTP policy: accepted at once (the status byte as for any stream), then every
   * request on it goes through the policy proxy; upstream connections are the proxy's keep-alive pool.
   */
  #servePolicyStream (stream: MuxStream, name: string, proxy: PolicyProxy): void {
    this.#metrics.streamsActive.inc({ upstream: name })
    let failure: Error | undefined
    stream.on('error', (err) => { failure ??= err })
    stream.once('close', () => {
      this.#metrics.streamsActive.dec({ upstream: name })
      this.#metrics.streamsTotal.inc({ upstream: name, result: failure === undefined ? 'ok' : 'aborted' })
      if (this.#log.isLevelEnabled('debug')) this.#log.debug({ streamId: stream.id, upstream: name, err: failure }, 'stream closed')
    })
    proxy.serve(stream, stream.id)
  }
}

/**
 * Creates an agent; call `start()` to connect.
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION, SLK_ERR_AGENT_INSECURE
 */
export function createAgent (options: AgentOptions, deps: { logger: Logger, registry: Registry, rng?: () => number, now?: () => number }): Agent {
  return new Agent(options, deps)
}
