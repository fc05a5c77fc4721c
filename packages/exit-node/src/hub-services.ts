import net from 'node:net'
import type { Logger } from 'pino'
import { PolicyProxy } from '@spokelink/http-policy'
import type { PolicyDenial } from '@spokelink/http-policy'
import { STREAM_STATUS, acceptHubStream } from '@spokelink/protocol'
import type { MuxStream } from '@spokelink/protocol'
import type { HubServiceConfig, SpokesConfig } from '@spokelink/auth'
import { ExitNodeError } from './errors.js'
import { EventSampler } from './event-sampler.js'
import type { ExitNodeMetrics } from './metrics.js'
import type { SpokeSession } from './spoke-session.js'
import type { TrafficMeter } from './traffic-meter.js'

/** Options of {@link HubServices}: the exit-node's, resolved. */
export interface HubServicesOptions {
  /** The agent's `{hubService}` header must arrive within this after its SYN. */
  headerTimeoutMs: number
  /** Deadline for dialing a hub service's address. */
  dialTimeoutMs: number
  /** Streams a spoke may have open to one hub service, unless its entry sets `maxConnections`. */
  maxConnectionsPerService: number
  /** Largest request body on a hub service with an `allow` list (streamed through, counted). */
  maxRequestBodyBytes: number
  /** A hub stream with no bytes either way for this long is closed, unless the entry sets `idleTimeout`. */
  idleTimeoutMs: number
  /** At most one refusal line per spoke and service per this interval. */
  refusalLogIntervalMs: number
}

/** What {@link HubServices} needs from the exit-node. */
export interface HubServicesDeps {
  metrics: ExitNodeMetrics
  logger: Logger
  /** Counts hub-service bytes per `spoke/service` key while sockets are open. */
  traffic: TrafficMeter
  /** The spokes file as it is now: every stream is checked against the current entry. */
  spokes: () => SpokesConfig
}

/** The `service` label of streams naming a hub service the spoke does not list: agent-chosen names never become labels. */
export const UNLISTED_SERVICE = '_unlisted'

/** Every `result` of `spokelink_hub_streams_total`, so a removed spoke's series can all be deleted. */
export const HUB_STREAM_RESULTS = ['ok', 'not_allowed', 'full', 'dial_failed', 'aborted', 'idle_timeout', 'bad_header'] as const
type HubStreamResult = typeof HUB_STREAM_RESULTS[number]

/** The traffic meter key of a spoke's hub service; neither a DNS label nor a service name has a `/`. */
export const hubTrafficKey = (spoke: string, service: string): string => `${spoke}/${service}`

/**
 * Serves the streams agents open to reach hub services (README "Remote write through the tunnel"): reads the
 * `{hubService}` header, checks it against the spoke's `hubServices` entry in the spokes file as it is now, dials
 * only the address that entry names (never one the agent sends), answers the status byte and relays with
 * backpressure through the stream's window. Refusals answer with a reason, so the agent closes its local
 * connection at once.
 */
export class HubServices {
  readonly #options: HubServicesOptions
  readonly #deps: HubServicesDeps
  readonly #log: Logger
  /** Open streams per `spoke/service`, all sessions of the spoke together. */
  readonly #open = new Map<string, number>()
  readonly #refusals = new Map<string, EventSampler>()
  /** Each open hub connection with the spoke, service and address it was dialed for. */
  readonly #sockets = new Map<net.Socket, { spoke: string, service: string, address: string }>()
  /** Each hub stream served under an `allow` list, with its entry as it was when the stream was accepted. */
  readonly #policed = new Map<MuxStream, { spoke: string, entry: HubServiceConfig }>()

  constructor (options: HubServicesOptions, deps: HubServicesDeps) {
    this.#options = options
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'exit-node.hub-services' })
  }

  /** Hub streams open now, for tests and shutdown. */
  get openStreams (): number {
    return this.#sockets.size + this.#policed.size
  }

  /** Serves one stream the agent of `session` opened; resolves once it is closed. */
  async serve (session: SpokeSession, stream: MuxStream): Promise<void> {
    const { spoke } = session
    const { metrics } = this.#deps
    let accepted
    try {
      accepted = await acceptHubStream(stream, {
        headerTimeoutMs: this.#options.headerTimeoutMs,
        headerTimeoutError: () => new ExitNodeError('SLK_ERR_EXIT_HUB_STREAM', `agent sent no hub stream header within ${this.#options.headerTimeoutMs} ms`),
      })
    } catch (err) {
      metrics.hubStreamsTotal.inc({ spoke, service: UNLISTED_SERVICE, result: 'bad_header' })
      session.log.warn({ streamId: stream.id, err }, 'bad hub stream header')
      return
    }
    const name = accepted.hubService
    const entry = this.#deps.spokes().spokes.find((candidate) => candidate.name === spoke)?.hubServices?.find((service) => service.name === name)
    if (entry === undefined) {
      this.#count(spoke, UNLISTED_SERVICE, 'not_allowed')
      this.#logRefusal(session, UNLISTED_SERVICE, { hubService: name.slice(0, 63), code: 'SLK_ERR_EXIT_HUB_STREAM' }, 'hub stream refused: the spoke has no such hub service')
      accepted.refuse(STREAM_STATUS.NOT_ALLOWED, `spoke ${spoke} may not reach hub service "${name}" (no hubServices entry in the exit-node's spokes file)`)
      return
    }
    const key = hubTrafficKey(spoke, name)
    const max = entry.maxConnections ?? this.#options.maxConnectionsPerService
    const open = this.#open.get(key) ?? 0
    if (open >= max) {
      this.#count(spoke, name, 'full')
      this.#logRefusal(session, name, { maxConnections: max }, 'hub stream refused: the spoke is at the hub service\'s connection cap')
      accepted.refuse(STREAM_STATUS.BUSY, `spoke ${spoke} already has ${max} streams to hub service "${name}" (maxConnections)`)
      return
    }
    this.#open.set(key, open + 1)
    session.streamOpened()
    metrics.hubStreamsActive.inc({ spoke, service: name })
    try {
      if (entry.allow === undefined) await this.#dialAndRelay(session, entry, accepted)
      else await this.#servePoliced(session, entry, accepted, stream)
    } finally {
      const left = (this.#open.get(key) ?? 1) - 1
      if (left === 0) this.#open.delete(key)
      else this.#open.set(key, left)
      session.streamClosed()
      metrics.hubStreamsActive.dec({ spoke, service: name })
    }
  }

  /** Destroys every hub connection (shutdown, after the agents' sessions were told to go away). */
  destroyAll (): void {
    for (const socket of this.#sockets.keys()) socket.destroy()
    for (const stream of this.#policed.keys()) stream.destroy()
  }

  /**
   * After a spokes file reload: closes the hub connections whose spoke no longer lists their service, or lists it at
   * another address. A removed entry thus takes effect on keep-alive connections too, not only on new streams.
   */
  revalidate (spokes: SpokesConfig): void {
    for (const [socket, { spoke, service, address }] of this.#sockets) {
      const entry = spokes.spokes.find((candidate) => candidate.name === spoke)?.hubServices?.find((candidate) => candidate.name === service)
      if (entry !== undefined && addressOf(entry) === address) continue
      this.#log.info({ spoke, hubService: service }, 'hub stream closed: its hubServices entry changed')
      socket.destroy()
    }
    for (const [stream, { spoke, entry }] of this.#policed) {
      const now = spokes.spokes.find((candidate) => candidate.name === spoke)?.hubServices?.find((candidate) => candidate.name === entry.name)
      // An allow list edited, added or removed changes what the stream may carry: its connections start over.
      if (now !== undefined && addressOf(now) === addressOf(entry) && JSON.stringify(now.allow) === JSON.stringify(entry.allow)) continue
      this.#log.info({ spoke, hubService: entry.name }, 'hub stream closed: its hubServices entry changed')
      stream.destroy()
    }
  }

  /**
   * Serves a stream to a hub service with an `allow` list: accepted at once, then each HTTP request on it is checked
   * by the policy proxy (the agent's engine, with opaque POST bodies streamed through up to `maxRequestBodyBytes`);
   * a refused one gets a 403 and never reaches the service. The stream's connection to the service is the proxy's
   * (one at a time, kept alive), metered and idle-timed like a relayed one.
   */
  async #servePoliced (session: SpokeSession, entry: HubServiceConfig, accepted: Awaited<ReturnType<typeof acceptHubStream>>, stream: MuxStream): Promise<void> {
    const { spoke } = session
    const name = entry.name
    const rules = entry.allow ?? []
    const idleTimeoutMs = entry.idleTimeoutMs ?? this.#options.idleTimeoutMs
    let failure: Error | undefined
    // A request the service could not take (answered 502, closing the stream): the stream counts as dial_failed.
    let unreachable = false
    const idle = setTimeout(() => {
      failure = new ExitNodeError('SLK_ERR_EXIT_IDLE_TIMEOUT', `no bytes either way for ${idleTimeoutMs} ms on spoke ${spoke} hub service ${name}`)
      stream.destroy(failure)
    }, idleTimeoutMs)
    const active = (): void => { idle.refresh() }
    const proxy = new PolicyProxy({ upstream: name, kind: 'allow', rules, postBody: 'opaque' }, { maxBodyBytes: this.#options.maxRequestBodyBytes, maxUpstreamSockets: 1 }, {
      target: entry.address,
      subject: `hub service ${name}`,
      onDenied: (denial: PolicyDenial) => {
        this.#deps.metrics.hubPolicyDeniedTotal.inc({ spoke, service: name, reason: denial.reason })
        this.#logRefusal(session, name, { method: denial.method, path: denial.path, reason: denial.reason }, 'hub request denied by the hub service\'s allow list')
      },
      onTargetError: () => {
        unreachable = true
        this.#logRefusal(session, name, { address: addressOf(entry) }, 'hub service unreachable')
      },
      // Not in #sockets: the stream is what revalidate() and destroyAll() close, which closes its connection too.
      onTargetSocket: (socket) => {
        const untrack = this.#deps.traffic.track(socket, hubTrafficKey(spoke, name))
        socket.on('data', active)
        socket.once('close', untrack)
      },
      logger: session.log,
    })
    this.#policed.set(stream, { spoke, entry })
    stream.on('data', active)
    stream.on('error', (err) => { failure ??= err })
    const closed = new Promise<void>((resolve) => { stream.once('close', resolve) })
    accepted.accept()
    proxy.serve(stream, stream.id)
    await closed
    clearTimeout(idle)
    proxy.close()
    this.#policed.delete(stream)
    const result: HubStreamResult = failure === undefined
      ? unreachable ? 'dial_failed' : 'ok'
      : failure instanceof ExitNodeError && failure.code === 'SLK_ERR_EXIT_IDLE_TIMEOUT' ? 'idle_timeout' : 'aborted'
    this.#count(spoke, name, result)
  }

  async #dialAndRelay (session: SpokeSession, entry: HubServiceConfig, accepted: Awaited<ReturnType<typeof acceptHubStream>>): Promise<void> {
    const { spoke } = session
    const name = entry.name
    let socket: net.Socket
    try {
      socket = await dialHubService(entry, this.#options.dialTimeoutMs)
    } catch (err) {
      this.#count(spoke, name, 'dial_failed')
      const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'timeout'
      // The address is the hub's business: the agent learns only that the service is unreachable and why.
      this.#logRefusal(session, name, { address: addressOf(entry), reason: code }, 'hub service unreachable')
      accepted.refuse(STREAM_STATUS.DIAL_FAILED, `hub service "${name}" is unreachable (${code})`)
      return
    }
    this.#sockets.set(socket, { spoke, service: name, address: addressOf(entry) })
    const idleTimeoutMs = entry.idleTimeoutMs ?? this.#options.idleTimeoutMs
    socket.setTimeout(idleTimeoutMs, () => {
      socket.destroy(new ExitNodeError('SLK_ERR_EXIT_IDLE_TIMEOUT', `no bytes either way for ${idleTimeoutMs} ms on spoke ${spoke} hub service ${name}`))
    })
    const untrack = this.#deps.traffic.track(socket, hubTrafficKey(spoke, name))
    const failure = await accepted.relay(socket)
    untrack()
    this.#sockets.delete(socket)
    const result: HubStreamResult = failure === undefined
      ? 'ok'
      : failure instanceof ExitNodeError && failure.code === 'SLK_ERR_EXIT_IDLE_TIMEOUT' ? 'idle_timeout' : 'aborted'
    this.#count(spoke, name, result)
    if (failure !== undefined && session.log.isLevelEnabled('debug')) session.log.debug({ hubService: name, err: failure }, 'hub stream aborted')
  }

  #count (spoke: string, service: string, result: HubStreamResult): void {
    this.#deps.metrics.hubStreamsTotal.inc({ spoke, service, result })
  }

  /** One warn line per spoke and service per interval, then one counting the rest: a looping agent cannot flood the log. */
  #logRefusal (session: SpokeSession, service: string, fields: Record<string, unknown>, msg: string): void {
    const key = hubTrafficKey(session.spoke, service)
    let sampler = this.#refusals.get(key)
    if (sampler === undefined) {
      sampler = new EventSampler(this.#options.refusalLogIntervalMs)
      this.#refusals.set(key, sampler)
    }
    const refused = sampler.record()
    if (refused !== undefined) session.log.warn({ ...fields, hubService: fields.hubService ?? service, refused }, msg)
  }
}

function addressOf (entry: HubServiceConfig): string {
  return entry.address.host.includes(':') ? `[${entry.address.host}]:${entry.address.port}` : `${entry.address.host}:${entry.address.port}`
}

/**
 * Dials a hub service's configured address with a deadline.
 * @throws the socket error (its `code`, e.g. ECONNREFUSED), or an Error after `timeoutMs`
 */
async function dialHubService (entry: HubServiceConfig, timeoutMs: number): Promise<net.Socket> {
  const socket = net.connect({ host: entry.address.host, port: entry.address.port, allowHalfOpen: true, noDelay: true })
  return new Promise<net.Socket>((resolve, reject) => {
    const timer = setTimeout(() => { fail(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })) }, timeoutMs)
    function fail (err: Error): void {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    socket.once('error', fail)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('error', fail)
      resolve(socket)
    })
  })
}
