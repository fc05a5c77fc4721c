import { isIP } from 'node:net'
import type { Logger } from 'pino'
import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'
import type { GrantedPort } from '@spokelink/protocol'
import type { EndpointSliceApi, StoredEndpointSlice, StoredPod } from './endpoint-slice-api.js'
import { MANAGED_SELECTOR, SPOKE_LABEL, buildEndpointSlice, endpointSliceMatches, endpointSliceName } from './endpoint-slice-manifest.js'
import type { PodIdentity } from './endpoint-slice-manifest.js'
import { ExitNodeError } from './errors.js'
import type { SessionRegistry } from './session-registry.js'

/** Options of {@link EndpointSlicePublisher}. */
export interface EndpointSlicePublisherOptions {
  /** Namespace of the exit-node pod and of the spokes' Services. */
  namespace: string
  /** The exit-node pod (downward API: POD_NAME, POD_IP, POD_UID). */
  pod: PodIdentity
  /** A spoke's Service is `<servicePrefix><spoke>`. @default '' */
  servicePrefix?: string
  /** How often own slices are checked against the live sessions and dead pods' slices are swept. @default 30000 */
  reconcileIntervalMs?: number
  /** On close, how long withdrawing own slices may take before draining goes on regardless. @default 5000 */
  withdrawTimeoutMs?: number
  /** First retry delay after a failed API call (doubled per failure, full jitter). @default 500 */
  retryInitialDelayMs?: number
  /** Longest retry delay. @default 30000 */
  retryMaxDelayMs?: number
  /** API requests in flight at once. @default 4 */
  maxConcurrentRequests?: number
}

type ResolvedOptions = Required<EndpointSlicePublisherOptions>

/** Defaults of the optional {@link EndpointSlicePublisherOptions}. */
export const ENDPOINT_SLICE_PUBLISHER_DEFAULTS = {
  servicePrefix: '',
  reconcileIntervalMs: 30_000,
  withdrawTimeoutMs: 5000,
  retryInitialDelayMs: 500,
  retryMaxDelayMs: 30_000,
  maxConcurrentRequests: 4,
} satisfies Omit<ResolvedOptions, 'namespace' | 'pod'>

/** What the publisher needs from its caller. */
export interface EndpointSlicePublisherDeps {
  api: EndpointSliceApi
  sessions: SessionRegistry
  logger: Logger
  /** Registry of the publisher's metrics. */
  registry: Registry
  /** Jitter source in [0, 1). @default Math.random */
  rng?: () => number
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/**
 * Validates publisher options and fills in defaults.
 * @throws ExitNodeError SLK_ERR_EXIT_INVALID_OPTION naming the option
 */
export function validateEndpointSlicePublisherOptions (options: EndpointSlicePublisherOptions): Readonly<ResolvedOptions> {
  const resolved: ResolvedOptions = { ...ENDPOINT_SLICE_PUBLISHER_DEFAULTS, ...options }
  const fail = (name: string, expected: string, got: unknown): never => {
    throw new ExitNodeError('SLK_ERR_EXIT_INVALID_OPTION', `endpoint slices option ${name}: expected ${expected}, got ${JSON.stringify(got)}`)
  }
  if (!DNS_LABEL.test(resolved.namespace)) fail('namespace (POD_NAMESPACE)', 'a namespace name', resolved.namespace)
  if (resolved.pod.name === '' || resolved.pod.name.length > 253) fail('pod.name (POD_NAME)', 'a pod name', resolved.pod.name)
  if (isIP(resolved.pod.ip) === 0) fail('pod.ip (POD_IP)', 'an IPv4 or IPv6 address', resolved.pod.ip)
  if (resolved.pod.uid === '') fail('pod.uid (POD_UID)', 'the pod uid', resolved.pod.uid)
  if (resolved.servicePrefix !== '' && !/^[a-z]([-a-z0-9]*)$/.test(resolved.servicePrefix)) fail('servicePrefix', 'lower-case letters, digits and "-", starting with a letter', resolved.servicePrefix)
  for (const name of ['reconcileIntervalMs', 'withdrawTimeoutMs', 'retryInitialDelayMs', 'retryMaxDelayMs', 'maxConcurrentRequests'] as const) {
    if (!Number.isInteger(resolved[name]) || resolved[name] <= 0) fail(name, 'a positive integer', resolved[name])
  }
  return Object.freeze(resolved)
}

interface PublisherMetrics {
  slices: Gauge
  errorsTotal: Counter<'operation'>
  sweptTotal: Counter
  leftoversTotal: Counter
}

function createPublisherMetrics (registry: Registry): PublisherMetrics {
  const registers = [registry]
  return {
    slices: new Gauge({ name: 'spokelink_endpoint_slices', help: 'EndpointSlices this replica keeps (one per spoke it holds a session for)', registers }),
    errorsTotal: new Counter({ name: 'spokelink_endpoint_slice_errors_total', help: 'Failed Kubernetes API calls for EndpointSlices by operation', labelNames: ['operation'], registers }),
    sweptTotal: new Counter({ name: 'spokelink_endpoint_slices_swept_total', help: 'EndpointSlices of dead exit-node pods deleted by this replica', registers }),
    leftoversTotal: new Counter({ name: 'spokelink_endpoint_controller_leftovers_deleted_total', help: 'EndpointSlices and Endpoints that Kubernetes\' controllers left on a spoke Service after its selector was removed, deleted by this replica', registers }),
  }
}

/** What Kubernetes' own controllers label the EndpointSlices and Endpoints they make for a Service with a selector. */
const CONTROLLER_SLICES = 'endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io'
const CONTROLLER_ENDPOINTS = 'endpoint-controller'

/** One line about a failed API call; the API adapter keeps tokens out of messages. */
function describeError (err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 300) ?? ''
}

/** What became of a slice's owner pod: `alive` keeps its slices, anything else has them swept. */
type PodFate = 'alive' | 'deleted' | 'replaced' | 'terminating'

function podFate (pod: StoredPod | undefined, ownerUid: string): PodFate {
  if (pod === undefined) return 'deleted'
  if (pod.uid !== ownerUid) return 'replaced'
  return pod.terminating ? 'terminating' : 'alive'
}

/**
 * Keeps one EndpointSlice per spoke this exit-node pod holds a live session for, so each spoke's selector-less
 * Service sends scrapes only to the replica its agent is connected to. Driven by the session registry's
 * `spoke-online`/`spoke-offline`; API calls run in the background (never on the data plane), retried with
 * backoff, and a periodic reconcile repairs drift and deletes slices of pods that no longer exist.
 */
export class EndpointSlicePublisher {
  readonly #options: Readonly<ResolvedOptions>
  readonly #api: EndpointSliceApi
  readonly #sessions: SessionRegistry
  readonly #log: Logger
  readonly #metrics: PublisherMetrics
  readonly #rng: () => number
  /** Spokes whose slice must be brought in line with the registry. */
  readonly #dirty = new Set<string>()
  readonly #inFlight = new Set<string>()
  readonly #operations = new Set<Promise<void>>()
  /** Consecutive failures per spoke; its presence means the spoke's last sync failed (log once per change). */
  readonly #failures = new Map<string, number>()
  readonly #retryTimers = new Map<string, NodeJS.Timeout>()
  /** Own slices believed to exist, by spoke. */
  readonly #published = new Set<string>()
  /** Spokes whose Service was checked for the endpoints controllers' leftovers (once per spoke and process). */
  readonly #leftoversChecked = new Set<string>()
  #leftoversForbidden = false
  readonly #onOnline = (spoke: string): void => { this.#markDirty(spoke) }
  readonly #onOffline = (spoke: string): void => { this.#markDirty(spoke) }
  #reconcileTimer: NodeJS.Timeout | undefined
  #reconciling: Promise<void> | undefined
  /** A reconcile asked for while one runs: it runs after, so it sees what happened meanwhile. */
  #reconcileQueued: Promise<void> | undefined
  #reconcileFailed = false
  #sweepForbidden = false
  #closing: Promise<void> | undefined

  constructor (options: EndpointSlicePublisherOptions, deps: EndpointSlicePublisherDeps) {
    this.#options = validateEndpointSlicePublisherOptions(options)
    this.#api = deps.api
    this.#sessions = deps.sessions
    this.#log = deps.logger.child({ component: 'exit-node.endpoint-slices' })
    this.#metrics = createPublisherMetrics(deps.registry)
    this.#rng = deps.rng ?? Math.random
    this.#sessions.on('spoke-online', this.#onOnline)
    this.#sessions.on('spoke-offline', this.#onOffline)
  }

  /** The Service of a spoke. */
  serviceOf (spoke: string): string {
    return `${this.#options.servicePrefix}${spoke}`
  }

  /** Starts the periodic reconcile (the first one runs now, in the background). */
  start (): void {
    if (this.#closing !== undefined || this.#reconcileTimer !== undefined) return
    this.#log.info({ namespace: this.#options.namespace, pod: this.#options.pod.name, podIp: this.#options.pod.ip }, 'endpoint slices enabled')
    this.#reconcileTimer = setInterval(() => { void this.reconcile() }, this.#options.reconcileIntervalMs).unref()
    void this.reconcile()
  }

  /** Resolves once no API call is queued or in flight (tests and shutdown). */
  async settled (): Promise<void> {
    while (this.#operations.size > 0 || this.#reconciling !== undefined || this.#reconcileQueued !== undefined) {
      await Promise.allSettled([...this.#operations, this.#reconciling, this.#reconcileQueued])
    }
  }

  /**
   * Lists every spokelink slice once: own slices of spokes with no session are deleted, missing or changed ones
   * rewritten, and slices owned by a pod that no longer exists (or has another uid) are deleted.
   */
  async reconcile (): Promise<void> {
    if (this.#closing !== undefined) return
    this.#reconcileQueued ??= (async () => {
      await this.#reconciling
      this.#reconcileQueued = undefined
      if (this.#closing !== undefined) return
      this.#reconciling = this.#reconcile().finally(() => { this.#reconciling = undefined })
      await this.#reconciling
    })()
    await this.#reconcileQueued
  }

  /** Withdraws own slices (bounded by `withdrawTimeoutMs`) and stops; call before draining. Idempotent. */
  async close (): Promise<void> {
    this.#closing ??= this.#withdraw()
    await this.#closing
  }

  #markDirty (spoke: string): void {
    if (this.#closing !== undefined) return
    clearTimeout(this.#retryTimers.get(spoke))
    this.#retryTimers.delete(spoke)
    this.#dirty.add(spoke)
    this.#pump()
  }

  #pump (): void {
    for (const spoke of this.#dirty) {
      if (this.#inFlight.size >= this.#options.maxConcurrentRequests) return
      if (this.#inFlight.has(spoke)) continue
      this.#dirty.delete(spoke)
      this.#inFlight.add(spoke)
      const operation = this.#sync(spoke).finally(() => {
        this.#inFlight.delete(spoke)
        this.#operations.delete(operation)
        if (this.#closing === undefined) this.#pump()
      })
      this.#operations.add(operation)
    }
  }

  /** Brings one spoke's slice in line with the registry; never throws (failures are retried). */
  async #sync (spoke: string): Promise<void> {
    const connected = this.#sessions.isConnected(spoke)
    const operation = connected ? 'publish' : 'withdraw'
    try {
      if (connected) await this.#publish(spoke)
      else await this.#withdrawOne(spoke)
      if (this.#failures.delete(spoke)) this.#log.info({ spoke, operation }, 'endpoint slice in sync again')
    } catch (err) {
      this.#metrics.errorsTotal.inc({ operation })
      const failures = (this.#failures.get(spoke) ?? 0) + 1
      this.#failures.set(spoke, failures)
      if (failures === 1) this.#log.warn({ spoke, operation, err: describeError(err) }, 'endpoint slice update failed; retrying')
      if (this.#closing !== undefined) return
      const ceiling = Math.min(this.#options.retryMaxDelayMs, this.#options.retryInitialDelayMs * 2 ** Math.min(failures - 1, 30))
      const timer = setTimeout(() => {
        this.#retryTimers.delete(spoke)
        this.#markDirty(spoke)
      }, Math.floor(this.#rng() * ceiling)).unref()
      this.#retryTimers.set(spoke, timer)
    }
  }

  #portsOf (spoke: string): GrantedPort[] {
    const byUpstream = new Map<string, GrantedPort>()
    for (const session of this.#sessions.sessionsOf(spoke)) {
      for (const port of session.ports) byUpstream.set(port.upstream, port)
    }
    return [...byUpstream.values()]
  }

  async #publish (spoke: string): Promise<void> {
    const desired = buildEndpointSlice(spoke, this.serviceOf(spoke), this.#options.pod, this.#portsOf(spoke))
    // A few rounds settle a race with another writer (a sweep, an old incarnation of this pod); then the retry backoff takes over.
    for (let round = 0; round < 3; round++) {
      const existing = await this.#api.getSlice(desired.name)
      if (existing === undefined) {
        if (await this.#api.createSlice(desired) === 'exists') continue
      } else if (!endpointSliceMatches(existing, desired)) {
        if (typeof await this.#api.replaceSlice(desired, existing.resourceVersion) === 'string') continue
      }
      if (!this.#published.has(spoke)) this.#log.info({ spoke, slice: desired.name, service: this.serviceOf(spoke) }, 'endpoint slice published')
      this.#published.add(spoke)
      this.#metrics.slices.set(this.#published.size)
      await this.#deleteControllerLeftovers(spoke)
      return
    }
    throw new ExitNodeError('SLK_ERR_EXIT_KUBE_API', `endpoint slice ${desired.name} kept changing under this replica`)
  }

  /**
   * A spoke Service that had a selector (a release upgraded to selector-less Services) keeps what Kubernetes' own
   * controllers made for it: the endpointslice controller's slices, and the Endpoints object that the mirroring
   * controller then copies into slices. Nothing removes them once the selector is gone, and they name the pods of
   * that time: kube-proxy would keep sending a share of the scrapes there. Deleted once per spoke, and only when the
   * Service has no selector (with one, the controllers own them and would make them again). Never throws.
   */
  async #deleteControllerLeftovers (spoke: string): Promise<void> {
    if (this.#leftoversForbidden || this.#leftoversChecked.has(spoke)) return
    this.#leftoversChecked.add(spoke)
    const service = this.serviceOf(spoke)
    try {
      if (await this.#api.serviceHasSelector(service) !== false) return
      const deleted: string[] = []
      for (const slice of await this.#api.listSlices(`${CONTROLLER_SLICES},kubernetes.io/service-name=${service}`)) {
        if (await this.#api.deleteSlice(slice.name, slice.resourceVersion) === 'deleted') deleted.push(`endpointslice/${slice.name}`)
      }
      const endpoints = await this.#api.getEndpoints(service)
      if (endpoints?.managedBy === CONTROLLER_ENDPOINTS && await this.#api.deleteEndpoints(service, endpoints.resourceVersion) === 'deleted') deleted.push(`endpoints/${service}`)
      if (deleted.length > 0) {
        this.#metrics.leftoversTotal.inc(deleted.length)
        this.#log.info({ spoke, service, deleted }, 'deleted what Kubernetes\' endpoints controllers left on the spoke Service from when it had a selector')
      }
    } catch (err) {
      this.#metrics.errorsTotal.inc({ operation: 'leftovers' })
      if (err instanceof ExitNodeError && err.httpStatus === 403) {
        this.#leftoversForbidden = true
        this.#log.warn({ err: describeError(err) }, 'cannot read services or endpoints: slices left by Kubernetes\' controllers on a Service that once had a selector are not deleted (grant services get, endpoints get/delete)')
      } else {
        // Checked again with the spoke's next publish.
        this.#leftoversChecked.delete(spoke)
        this.#log.warn({ spoke, service, err: describeError(err) }, 'could not check the spoke Service for the endpoints controllers\' leftovers')
      }
    }
  }

  async #withdrawOne (spoke: string): Promise<void> {
    const name = endpointSliceName(this.serviceOf(spoke), this.#options.pod.name)
    const result = await this.#api.deleteSlice(name)
    if (this.#published.delete(spoke) || result === 'deleted') this.#log.info({ spoke, slice: name, result }, 'endpoint slice withdrawn')
    this.#metrics.slices.set(this.#published.size)
  }

  #isOwn (slice: StoredEndpointSlice): boolean {
    return slice.ownerReferences.some((owner) => owner.kind === 'Pod' && owner.uid === this.#options.pod.uid)
  }

  async #reconcile (): Promise<void> {
    let slices: StoredEndpointSlice[]
    try {
      slices = await this.#api.listSlices(MANAGED_SELECTOR)
      if (this.#reconcileFailed) this.#log.info('endpoint slices listed again')
      this.#reconcileFailed = false
    } catch (err) {
      this.#metrics.errorsTotal.inc({ operation: 'list' })
      if (!this.#reconcileFailed) this.#log.warn({ err: describeError(err) }, 'endpoint slices could not be listed; retrying at the next reconcile')
      this.#reconcileFailed = true
      return
    }
    const ownBySpoke = new Map<string, StoredEndpointSlice>()
    const foreign: StoredEndpointSlice[] = []
    for (const slice of slices) {
      if (!this.#isOwn(slice)) { foreign.push(slice); continue }
      const spoke = slice.labels[SPOKE_LABEL]
      if (spoke !== undefined && slice.name === endpointSliceName(this.serviceOf(spoke), this.#options.pod.name)) {
        ownBySpoke.set(spoke, slice)
        // Its session is gone, or it says something else than the sessions do: the per-spoke sync settles it.
        if (!this.#sessions.isConnected(spoke) ||
          !endpointSliceMatches(slice, buildEndpointSlice(spoke, this.serviceOf(spoke), this.#options.pod, this.#portsOf(spoke)))) this.#markDirty(spoke)
      } else {
        // An own slice under a name this replica no longer uses (its service prefix changed).
        await this.#deleteListed(slice, 'withdraw')
      }
    }
    for (const session of this.#sessions.all()) {
      // (A spoke whose leftovers check failed is checked again by its sync.)
      if (!ownBySpoke.has(session.spoke) || (!this.#leftoversForbidden && !this.#leftoversChecked.has(session.spoke))) this.#markDirty(session.spoke)
    }
    await this.#sweep(foreign)
  }

  /**
   * Deletes slices whose owner pod is gone, was replaced (same name, new uid) or is terminating; the garbage
   * collector does the first two when it runs. A terminating pod has withdrawn its own slices at SIGTERM if
   * it could; one on a lost node keeps its Pod object (terminating) until the node returns or is deleted,
   * and nothing else would take its slices out of the Services meanwhile.
   */
  async #sweep (foreign: StoredEndpointSlice[]): Promise<void> {
    if (this.#sweepForbidden) return
    const podFates = new Map<string, PodFate>()
    for (const slice of foreign) {
      const owner = slice.ownerReferences.find((candidate) => candidate.kind === 'Pod')
      // Not written by a spokelink exit-node (no pod owner): not ours to judge.
      if (owner === undefined) continue
      let fate = podFates.get(`${owner.name}/${owner.uid}`)
      if (fate === undefined) {
        try {
          fate = podFate(await this.#api.getPod(owner.name), owner.uid)
        } catch (err) {
          this.#metrics.errorsTotal.inc({ operation: 'sweep' })
          if (err instanceof ExitNodeError && err.httpStatus === 403) {
            this.#sweepForbidden = true
            this.#log.warn({ err: describeError(err) }, 'cannot read pods: the sweep of dead replicas\' slices is off; the garbage collector removes them through their owner references')
          } else {
            this.#log.warn({ err: describeError(err), pod: owner.name }, 'endpoint slice sweep failed; retrying at the next reconcile')
          }
          return
        }
        podFates.set(`${owner.name}/${owner.uid}`, fate)
      }
      if (fate === 'alive') continue
      if (await this.#deleteListed(slice, 'sweep')) {
        this.#metrics.sweptTotal.inc()
        this.#log.info({ slice: slice.name, spoke: slice.labels[SPOKE_LABEL], ownerPod: owner.name, ownerPodState: fate }, 'endpoint slice of a dead pod swept')
      }
    }
  }

  /** Deletes a listed slice only if it is unchanged since the list; true when this call deleted it. */
  async #deleteListed (slice: StoredEndpointSlice, operation: 'withdraw' | 'sweep'): Promise<boolean> {
    try {
      return await this.#api.deleteSlice(slice.name, slice.resourceVersion) === 'deleted'
    } catch (err) {
      this.#metrics.errorsTotal.inc({ operation })
      this.#log.warn({ slice: slice.name, operation, err: describeError(err) }, 'endpoint slice could not be deleted; retrying at the next reconcile')
      return false
    }
  }

  async #withdraw (): Promise<void> {
    clearInterval(this.#reconcileTimer)
    for (const timer of this.#retryTimers.values()) clearTimeout(timer)
    this.#retryTimers.clear()
    this.#dirty.clear()
    this.#sessions.off('spoke-online', this.#onOnline)
    this.#sessions.off('spoke-offline', this.#onOffline)
    const started = Date.now()
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => { resolve('timeout') }, this.#options.withdrawTimeoutMs) })
    const withdrawAll = async (): Promise<number> => {
      // A create still in flight would land after the delete and outlive this pod: let it finish first.
      await this.settled()
      const names = new Set([...this.#published, ...this.#sessions.all().map((session) => session.spoke)].map((spoke) => endpointSliceName(this.serviceOf(spoke), this.#options.pod.name)))
      const results = await Promise.allSettled([...names].map(async (name) => this.#api.deleteSlice(name)))
      const failed = results.filter((result) => result.status === 'rejected')
      if (failed.length > 0) this.#metrics.errorsTotal.inc({ operation: 'withdraw' }, failed.length)
      this.#published.clear()
      this.#metrics.slices.set(0)
      return names.size - failed.length
    }
    const outcome = await Promise.race([withdrawAll(), deadline])
    clearTimeout(timer)
    if (outcome === 'timeout') {
      this.#metrics.errorsTotal.inc({ operation: 'withdraw' })
      this.#log.warn({ timeoutMs: this.#options.withdrawTimeoutMs }, 'endpoint slices not withdrawn in time; draining anyway (the owner references remove them with the pod)')
    } else {
      this.#log.info({ slices: outcome, durationMs: Date.now() - started }, 'endpoint slices withdrawn')
    }
  }
}

/**
 * Creates an EndpointSlice publisher for one exit-node pod; call `start()` once the exit-node listens.
 * @throws ExitNodeError SLK_ERR_EXIT_INVALID_OPTION
 */
export function createEndpointSlicePublisher (options: EndpointSlicePublisherOptions, deps: EndpointSlicePublisherDeps): EndpointSlicePublisher {
  return new EndpointSlicePublisher(options, deps)
}
