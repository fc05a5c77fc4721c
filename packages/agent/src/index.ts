/**
 * @packageDocumentation
 * The spokelink agent: dials out to the exit-node over wss, reconnects with backoff and full jitter,
 * and dials only the upstreams it was started with.
 *
 * @example
 * ```ts
 * const agent = createAgent({ server: 'wss://hub.example.com/connect', token, upstreams: [parseUpstreamSpec('prometheus=prometheus-server:9090')] }, { logger, registry: new Registry() })
 * agent.start()
 * ```
 */
export { Agent, createAgent, validateAgentOptions, AGENT_DEFAULTS } from './agent.js'
export type { AgentOptions, AgentState, AgentEvents, ClientCertificateOutcome } from './agent.js'
export { ClientIdentity, STATE_DIR_FILES } from './client-identity.js'
export { Backoff, BACKOFF_DEFAULTS } from './backoff.js'
export type { BackoffOptions } from './backoff.js'
export { connectExitNode, checkServerUrl, verifyPinnedPeer } from './connect-exit-node.js'
export { createLoopbackOnlyLookup, isLoopbackAddress, LOOPBACK_NAME } from './loopback.js'
export type { ResolveAllFunction } from './loopback.js'
export type { ConnectOptions, ExitNodeConnection } from './connect-exit-node.js'
export { AgentError, AGENT_ERROR_CODES } from './errors.js'
export type { AgentErrorCode } from './errors.js'
export { startAgentHealthServer } from './health-server.js'
export { parseUpstreamSpec, dialUpstream } from './upstreams.js'
export { parseHubServiceSpec, HUB_SERVICE_LISTENER_DEFAULTS } from './hub-service-listener.js'
export type { HubServiceListen, HubServiceListenerOptions } from './hub-service-listener.js'
export { parseHttpPolicies, parsePolicyRule } from './http-policy.js'
export { checkRequestHead, READ_ONLY_RULES, POLICY_PROXY_DEFAULTS } from '@spokelink/http-policy'
export type { DenyReason, HttpPolicy, PolicyDecision, PolicyMethod, PolicyRule, PolicyProxyOptions, RequestHead } from '@spokelink/http-policy'
export type { Upstream } from './upstreams.js'
