/**
 * The slice of the Kubernetes API the EndpointSlice publisher needs, bound to one namespace. The CLI implements it
 * with `@kubernetes/client-node`; the exit-node package depends on this interface only, so it never loads a
 * Kubernetes client when EndpointSlices are off.
 *
 * Implementations throw only for failures (network, 403, 5xx); the outcomes the publisher acts on (already
 * exists, conflict, gone) are return values. Error messages must never carry the bearer token.
 */
export interface EndpointSliceApi {
  /** EndpointSlices of the namespace matching a label selector (`a=b,c=d`). */
  listSlices: (labelSelector: string) => Promise<StoredEndpointSlice[]>
  /** One EndpointSlice; undefined when it does not exist. */
  getSlice: (name: string) => Promise<StoredEndpointSlice | undefined>
  /** Creates a slice; `'exists'` when one of that name is already there. */
  createSlice: (slice: EndpointSliceManifest) => Promise<StoredEndpointSlice | 'exists'>
  /** Replaces a slice at `resourceVersion`; `'conflict'` when it changed meanwhile, `'gone'` when it was deleted. */
  replaceSlice: (slice: EndpointSliceManifest, resourceVersion: string) => Promise<StoredEndpointSlice | 'conflict' | 'gone'>
  /** Deletes a slice (only at `resourceVersion` when given); `'gone'` when it was not there, `'conflict'` when it changed. */
  deleteSlice: (name: string, resourceVersion?: string) => Promise<'deleted' | 'gone' | 'conflict'>
  /** A Pod of the namespace: its uid and whether it is being deleted (it has a deletionTimestamp); undefined when no Pod has that name. */
  getPod: (name: string) => Promise<StoredPod | undefined>
  /** Whether a Service of the namespace has a selector; undefined when no Service has that name. */
  serviceHasSelector: (name: string) => Promise<boolean | undefined>
  /** A v1 Endpoints object: its `endpoints.kubernetes.io/managed-by` label and resourceVersion; undefined when absent. */
  getEndpoints: (name: string) => Promise<StoredEndpoints | undefined>
  /** Deletes a v1 Endpoints object at `resourceVersion`; `'gone'` when it was not there, `'conflict'` when it changed. */
  deleteEndpoints: (name: string, resourceVersion: string) => Promise<'deleted' | 'gone' | 'conflict'>
}

/** What the sweep reads of a Pod. */
export interface StoredPod {
  uid: string
  /** It has a deletionTimestamp: draining, or stuck terminating on a node that is gone. */
  terminating: boolean
}

/** What the publisher reads of a v1 Endpoints object (the leftover of a Service that had a selector). */
export interface StoredEndpoints {
  managedBy: string | undefined
  resourceVersion: string
}

/** The fields of a `discovery.k8s.io/v1` EndpointSlice that spokelink writes and compares. */
export interface EndpointSliceManifest {
  name: string
  labels: Record<string, string>
  ownerReferences: EndpointSliceOwner[]
  addressType: 'IPv4' | 'IPv6'
  endpoints: Array<{ addresses: string[], ready: boolean, targetPod?: { name: string, uid: string } | undefined }>
  ports: Array<{ name: string, port: number, protocol: 'TCP' }>
}

/** An owner reference (spokelink only writes Pods). */
export interface EndpointSliceOwner {
  apiVersion: string
  kind: string
  name: string
  uid: string
}

/** An EndpointSlice as read back from the API. */
export interface StoredEndpointSlice extends EndpointSliceManifest {
  resourceVersion: string
}
