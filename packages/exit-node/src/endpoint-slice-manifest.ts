import { createHash } from 'node:crypto'
import type { GrantedPort } from '@spokelink/protocol'
import type { EndpointSliceManifest } from './endpoint-slice-api.js'

/** Label value marking the slices spokelink keeps; Kubernetes' own controller leaves such slices alone. */
export const MANAGED_BY = 'spokelink'
/** Label key naming the spoke a slice serves, so a reconcile maps a listed slice back to its spoke. */
export const SPOKE_LABEL = 'spokelink.dev/spoke'
/** The selector of every slice any spokelink replica keeps. */
export const MANAGED_SELECTOR = `endpointslice.kubernetes.io/managed-by=${MANAGED_BY}`

/** The exit-node pod, from the downward API. */
export interface PodIdentity {
  name: string
  ip: string
  uid: string
}

/**
 * `<service>-<10 hex of sha256(pod name)>`: one slice per (spoke, pod), a name of bounded length whatever the
 * pod's name (a Service name is at most 63 characters, so this is at most 74 of the 253 allowed).
 */
export function endpointSliceName (service: string, podName: string): string {
  return `${service}-${createHash('sha256').update(podName).digest('hex').slice(0, 10)}`
}

/**
 * The Service port name of an upstream, as the exit-node chart names it (lower case, `_` → `-`, 15 characters):
 * a selector-less Service sends a port to the slice port of the same name.
 */
export function servicePortName (upstream: string): string {
  return upstream.toLowerCase().replaceAll('_', '-').slice(0, 15).replace(/^-+|-+$/g, '')
}

/**
 * The slice one pod keeps for one spoke: its pod IP, ready, and each data-plane port twice — named after its
 * upstream (the chart's `spokeServices.port`, 9090) and `p<port>` (the chart's per-port Service ports).
 */
export function buildEndpointSlice (spoke: string, service: string, pod: PodIdentity, ports: readonly GrantedPort[]): EndpointSliceManifest {
  const byName = new Map<string, number>()
  for (const port of ports) {
    const name = servicePortName(port.upstream)
    if (name !== '' && !byName.has(name)) byName.set(name, port.port)
    byName.set(`p${port.port}`, port.port)
  }
  return {
    name: endpointSliceName(service, pod.name),
    labels: {
      'kubernetes.io/service-name': service,
      'endpointslice.kubernetes.io/managed-by': MANAGED_BY,
      [SPOKE_LABEL]: spoke,
    },
    ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid }],
    addressType: pod.ip.includes(':') ? 'IPv6' : 'IPv4',
    endpoints: [{ addresses: [pod.ip], ready: true, targetPod: { name: pod.name, uid: pod.uid } }],
    ports: [...byName].sort(([a], [b]) => a.localeCompare(b)).map(([name, port]) => ({ name, port, protocol: 'TCP' as const })),
  }
}

/** Whether a stored slice already says what `desired` says (labels spokelink sets, owner, endpoints, ports). */
export function endpointSliceMatches (stored: EndpointSliceManifest, desired: EndpointSliceManifest): boolean {
  const essence = (slice: EndpointSliceManifest): string => JSON.stringify([
    Object.keys(desired.labels).map((key) => slice.labels[key] ?? null),
    slice.ownerReferences.map((owner) => `${owner.kind}/${owner.name}/${owner.uid}`).sort(),
    slice.addressType,
    slice.endpoints.map((endpoint) => `${[...endpoint.addresses].sort().join(',')}|${String(endpoint.ready)}`).sort(),
    slice.ports.map((port) => `${port.name}/${port.port}/${port.protocol}`).sort(),
  ])
  return essence(stored) === essence(desired)
}
