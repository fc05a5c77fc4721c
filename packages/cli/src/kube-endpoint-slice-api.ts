import { ApiException, CoreV1Api, DiscoveryV1Api, KubeConfig } from '@kubernetes/client-node'
import type { V1EndpointSlice } from '@kubernetes/client-node'
import { ExitNodeError } from '@spokelink/exit-node'
import type { EndpointSliceApi, EndpointSliceManifest, StoredEndpointSlice } from '@spokelink/exit-node'
import { CliError } from './errors.js'

/**
 * The Kubernetes client config of `--endpoint-slices`: the file `KUBECONFIG` names (development, tests), else the
 * pod's service account (in-cluster: token file re-read as it rotates, the cluster CA).
 * @throws CliError SLK_ERR_CONFIG_KUBERNETES when neither is there or the file cannot be read
 */
export function loadKubeConfig (env: Readonly<Record<string, string | undefined>>): KubeConfig {
  const kubeConfig = new KubeConfig()
  const file = env.KUBECONFIG?.split(':').find((path) => path !== '')
  try {
    if (file !== undefined) kubeConfig.loadFromFile(file)
    else if (env.KUBERNETES_SERVICE_HOST !== undefined && env.KUBERNETES_SERVICE_HOST !== '') kubeConfig.loadFromCluster()
    else throw new Error('not in a pod (no KUBERNETES_SERVICE_HOST) and no KUBECONFIG')
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err)
    throw new CliError('SLK_ERR_CONFIG_KUBERNETES', `--endpoint-slices: no Kubernetes API config: ${why.slice(0, 200)}`)
  }
  return kubeConfig
}

interface ApiStatusBody { reason?: unknown, message?: unknown }

function statusBody (body: unknown): ApiStatusBody {
  if (typeof body === 'string') {
    try {
      const parsed: unknown = JSON.parse(body)
      return typeof parsed === 'object' && parsed !== null ? parsed : {}
    } catch {
      // Not a Status object (a proxy's HTML page, say): the HTTP code alone says enough.
      return {}
    }
  }
  return typeof body === 'object' && body !== null ? body : {}
}

/**
 * Runs one API call; 404 and 409 become `onNotFound`/`onConflict` results, anything else one ExitNodeError line
 * (operation, object, HTTP status and the API's own reason, which names the service account, never its token).
 */
async function call<T, R = never> (what: string, request: () => Promise<T>, outcomes: { 404?: R, 409?: R }): Promise<T | R> {
  try {
    return await request()
  } catch (err) {
    if (err instanceof ApiException) {
      const code = Number(err.code)
      if (code === 404 && '404' in outcomes) return outcomes[404] as R
      if (code === 409 && '409' in outcomes) return outcomes[409] as R
      const body = statusBody(err.body)
      const reason = typeof body.message === 'string' ? body.message : typeof body.reason === 'string' ? body.reason : 'no reason given'
      throw new ExitNodeError('SLK_ERR_EXIT_KUBE_API', `kubernetes API ${what}: HTTP ${code}: ${reason.slice(0, 300)}`, { httpStatus: code })
    }
    const why = err instanceof Error ? `${err.name}: ${err.message.split('\n')[0] ?? ''}` : String(err)
    throw new ExitNodeError('SLK_ERR_EXIT_KUBE_API', `kubernetes API ${what}: ${why.slice(0, 300)}`, { cause: err })
  }
}

function toBody (slice: EndpointSliceManifest, namespace: string, resourceVersion?: string): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: slice.name, namespace, labels: slice.labels, ownerReferences: slice.ownerReferences, resourceVersion },
    addressType: slice.addressType,
    endpoints: slice.endpoints.map((endpoint) => ({
      addresses: endpoint.addresses,
      conditions: { ready: endpoint.ready },
      targetRef: endpoint.targetPod === undefined ? undefined : { kind: 'Pod', namespace, name: endpoint.targetPod.name, uid: endpoint.targetPod.uid },
    })),
    ports: slice.ports.map((port) => ({ name: port.name, port: port.port, protocol: port.protocol })),
  }
}

function fromBody (body: V1EndpointSlice): StoredEndpointSlice {
  const metadata = body.metadata ?? {}
  return {
    name: metadata.name ?? '',
    resourceVersion: metadata.resourceVersion ?? '',
    labels: metadata.labels ?? {},
    ownerReferences: (metadata.ownerReferences ?? []).map((owner) => ({ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid })),
    addressType: body.addressType === 'IPv6' ? 'IPv6' : 'IPv4',
    endpoints: body.endpoints.map((endpoint) => ({
      addresses: endpoint.addresses,
      ready: endpoint.conditions?.ready ?? false,
      targetPod: endpoint.targetRef?.kind === 'Pod' ? { name: endpoint.targetRef.name ?? '', uid: endpoint.targetRef.uid ?? '' } : undefined,
    })),
    ports: (body.ports ?? []).map((port) => ({ name: port.name ?? '', port: port.port ?? 0, protocol: 'TCP' as const })),
  }
}

/** The exit-node's {@link EndpointSliceApi} on `@kubernetes/client-node`, bound to one namespace. */
export function createKubeEndpointSliceApi (kubeConfig: KubeConfig, namespace: string): EndpointSliceApi {
  const discovery = kubeConfig.makeApiClient(DiscoveryV1Api)
  const core = kubeConfig.makeApiClient(CoreV1Api)
  const where = (name: string): string => `endpointslice ${namespace}/${name}`
  return {
    listSlices: async (labelSelector) => {
      const list = await call(`list endpointslices in ${namespace}`, async () => discovery.listNamespacedEndpointSlice({ namespace, labelSelector }), {})
      return list.items.map(fromBody)
    },
    getSlice: async (name) => {
      const body = await call(`get ${where(name)}`, async () => discovery.readNamespacedEndpointSlice({ name, namespace }), { 404: undefined })
      return body === undefined ? undefined : fromBody(body)
    },
    createSlice: async (slice) => {
      const body = await call(`create ${where(slice.name)}`, async () => discovery.createNamespacedEndpointSlice({ namespace, body: toBody(slice, namespace) }), { 409: 'exists' as const })
      return body === 'exists' ? body : fromBody(body)
    },
    replaceSlice: async (slice, resourceVersion) => {
      const body = await call(`replace ${where(slice.name)}`, async () => discovery.replaceNamespacedEndpointSlice({ name: slice.name, namespace, body: toBody(slice, namespace, resourceVersion) }), { 404: 'gone' as const, 409: 'conflict' as const })
      return typeof body === 'string' ? body : fromBody(body)
    },
    deleteSlice: async (name, resourceVersion) => {
      const body = resourceVersion === undefined ? undefined : { preconditions: { resourceVersion } }
      const result = await call(`delete ${where(name)}`, async () => discovery.deleteNamespacedEndpointSlice({ name, namespace, body }), { 404: 'gone' as const, 409: 'conflict' as const })
      return typeof result === 'string' ? result : 'deleted'
    },
    getPod: async (name) => {
      const pod = await call(`get pod ${namespace}/${name}`, async () => core.readNamespacedPod({ name, namespace }), { 404: undefined })
      return pod === undefined ? undefined : { uid: pod.metadata?.uid ?? '', terminating: pod.metadata?.deletionTimestamp != null }
    },
    serviceHasSelector: async (name) => {
      const service = await call(`get service ${namespace}/${name}`, async () => core.readNamespacedService({ name, namespace }), { 404: undefined })
      return service === undefined ? undefined : Object.keys(service.spec?.selector ?? {}).length > 0
    },
    getEndpoints: async (name) => {
      const endpoints = await call(`get endpoints ${namespace}/${name}`, async () => core.readNamespacedEndpoints({ name, namespace }), { 404: undefined })
      return endpoints === undefined ? undefined : { managedBy: endpoints.metadata?.labels?.['endpoints.kubernetes.io/managed-by'], resourceVersion: endpoints.metadata?.resourceVersion ?? '' }
    },
    deleteEndpoints: async (name, resourceVersion) => {
      const result = await call(`delete endpoints ${namespace}/${name}`, async () => core.deleteNamespacedEndpoints({ name, namespace, body: { preconditions: { resourceVersion } } }), { 404: 'gone' as const, 409: 'conflict' as const })
      return typeof result === 'string' ? result : 'deleted'
    },
  }
}
