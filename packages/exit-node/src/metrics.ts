import { Counter, Gauge, Histogram } from 'prom-client'
import type { Registry } from 'prom-client'

/** The exit-node's tunnel metrics, registered on the caller's registry. */
export interface ExitNodeMetrics {
  streamsActive: Gauge<'spoke' | 'upstream'>
  streamsTotal: Counter<'spoke' | 'upstream' | 'result'>
  streamsOpenedTotal: Counter<'spoke' | 'upstream'>
  bytesTotal: Counter<'spoke' | 'direction'>
  authFailuresTotal: Counter<'reason'>
  streamDurationSeconds: Histogram<'spoke' | 'upstream'>
  muxProtocolErrorsTotal: Counter<'spoke'>
  hubStreamsActive: Gauge<'spoke' | 'service'>
  hubStreamsTotal: Counter<'spoke' | 'service' | 'result'>
  hubBytesTotal: Counter<'spoke' | 'service' | 'direction'>
  hubPolicyDeniedTotal: Counter<'spoke' | 'service' | 'reason'>
}

/** Every `result` label of `spokelink_streams_total`, so a removed spoke's series can all be deleted. */
export const STREAM_RESULTS = ['ok', 'refused', 'idle_timeout', 'aborted', 'no_session', 'open_failed', 'port_full'] as const

/** Creates the metrics named in DESIGN ("The tunnel's own telemetry") on `registry`; the per-spoke fleet gauges are in fleet-metrics.ts. */
export function createExitNodeMetrics (registry: Registry, hooks: { beforeBytesScrape?: () => void, beforeHubBytesScrape?: () => void } = {}): ExitNodeMetrics {
  const registers = [registry]
  return {
    streamsActive: new Gauge({ name: 'spokelink_streams_active', help: 'Data streams currently open', labelNames: ['spoke', 'upstream'], registers }),
    streamsOpenedTotal: new Counter({ name: 'spokelink_streams_opened_total', help: 'Data streams opened, counted at open (a keep-alive connection\'s stream may stay open for hours before streams_total sees its result)', labelNames: ['spoke', 'upstream'], registers }),
    streamsTotal: new Counter({ name: 'spokelink_streams_total', help: 'Data streams by result', labelNames: ['spoke', 'upstream', 'result'], registers }),
    bytesTotal: new Counter({ name: 'spokelink_bytes_total', help: 'Payload bytes through the data plane; in = towards the spoke', labelNames: ['spoke', 'direction'], registers, collect () { hooks.beforeBytesScrape?.() } }),
    authFailuresTotal: new Counter({ name: 'spokelink_auth_failures_total', help: 'Refused /connect attempts by reason', labelNames: ['reason'], registers }),
    streamDurationSeconds: new Histogram({
      name: 'spokelink_stream_duration_seconds',
      help: 'Lifetime of data streams',
      labelNames: ['spoke', 'upstream'],
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers,
    }),
    muxProtocolErrorsTotal: new Counter({ name: 'spokelink_mux_protocol_errors_total', help: 'Sessions closed because the agent broke the mux protocol', labelNames: ['spoke'], registers }),
    // service is a name from the spokes file, or _unlisted for one the spoke does not list: agents cannot add series.
    hubStreamsActive: new Gauge({ name: 'spokelink_hub_streams_active', help: 'Streams agents opened to hub services, open now', labelNames: ['spoke', 'service'], registers }),
    hubStreamsTotal: new Counter({ name: 'spokelink_hub_streams_total', help: 'Streams agents opened to hub services, by result', labelNames: ['spoke', 'service', 'result'], registers }),
    hubBytesTotal: new Counter({ name: 'spokelink_hub_bytes_total', help: 'Payload bytes between spokes and hub services; to_hub = from the spoke', labelNames: ['spoke', 'service', 'direction'], registers, collect () { hooks.beforeHubBytesScrape?.() } }),
    // reason is one of the policy engine's closed DENY_REASONS.
    hubPolicyDeniedTotal: new Counter({ name: 'spokelink_hub_policy_denied_total', help: 'Requests to hub services refused by their allow list, by reason', labelNames: ['spoke', 'service', 'reason'], registers }),
  }
}
