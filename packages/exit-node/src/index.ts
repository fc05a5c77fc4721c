/**
 * @packageDocumentation
 * The spokelink exit-node: control server for agents (`/connect`, `/healthz`, `/readyz`), admin server for
 * operators (`/metrics`, `/v1/sd`), session registry, data-plane listeners, stream routing and tunnel metrics.
 *
 * @example
 * ```ts
 * const exitNode = createExitNode({ host: '0.0.0.0', port: 8123, adminHost: '127.0.0.1', adminPort: 9464 }, await loadSpokesFile('spokes.yaml'), { logger, registry: new Registry() })
 * await exitNode.listen()
 * ```
 */
export { createExitNode, ExitNode, EXIT_NODE_DEFAULTS, validateExitNodeOptions } from './exit-node.js'
export type { ExitNodeOptions, ExitNodeDeps } from './exit-node.js'
export { ExitNodeError, EXIT_NODE_ERROR_CODES } from './errors.js'
export type { ExitNodeErrorCode } from './errors.js'
export { ClientCertificateAuthority } from './client-certificates.js'
export { startTlsAfterFirstBytes } from './tls-after-first-bytes.js'
export type { ClientCertificateAuthorityOptions, ClientCertificateCheck, IssuedClientCertificate } from './client-certificates.js'
export { MAX_CERTIFICATE_REQUESTS_PER_SESSION } from './certificate-requests.js'
export { SessionRegistry } from './session-registry.js'
export type { SpokeSession } from './spoke-session.js'
export { buildTargetGroups } from './service-discovery.js'
export type { TargetGroup } from './service-discovery.js'
export { ConnectionBudget } from './connection-budget.js'
export type { ConnectionBudgetOptions, ConnectionRefusal, ConnectionSlot } from './connection-budget.js'
export { FailedAuthLimiter } from './failed-auth-limiter.js'
export type { FailedAuthLimiterOptions } from './failed-auth-limiter.js'
export { LogSampler } from './log-sampler.js'
export type { LogSamplerOptions } from './log-sampler.js'
export { parseOpenFileLimit, readOpenFileLimit } from './open-file-limit.js'
export type { OpenFileLimit } from './open-file-limit.js'
export { SessionSlots, maxSessionsOf } from './session-slots.js'
export { sourceKeyOf } from './source-address.js'
export { clipUntrusted } from './untrusted-text.js'
export { createEndpointSlicePublisher, EndpointSlicePublisher, ENDPOINT_SLICE_PUBLISHER_DEFAULTS, validateEndpointSlicePublisherOptions } from './endpoint-slice-publisher.js'
export type { EndpointSlicePublisherOptions, EndpointSlicePublisherDeps } from './endpoint-slice-publisher.js'
export { buildEndpointSlice, endpointSliceName, servicePortName, MANAGED_SELECTOR } from './endpoint-slice-manifest.js'
export type { PodIdentity } from './endpoint-slice-manifest.js'
export type { EndpointSliceApi, EndpointSliceManifest, EndpointSliceOwner, StoredEndpointSlice, StoredEndpoints, StoredPod } from './endpoint-slice-api.js'
/** Bytes as B, KiB, MiB or GiB with one decimal (the status page and `spokelink status`). */
export { formatBytes } from './status-page.js'
