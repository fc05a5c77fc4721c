import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'

/** The agent's metrics, registered on the caller's registry. */
export interface AgentMetrics {
  connected: Gauge
  reconnectsTotal: Counter
  upstreamDialErrorsTotal: Counter<'upstream'>
  streamsTotal: Counter<'upstream' | 'result'>
  streamsActive: Gauge<'upstream'>
  policyDeniedTotal: Counter<'upstream' | 'reason'>
  lastConnectError: Gauge<'code'>
  sessionRttSeconds: Gauge
  permanentFailure: Gauge
  hubStreamsActive: Gauge<'service'>
  hubStreamsTotal: Counter<'service' | 'result'>
}

/** Creates the agent metrics named in DESIGN on `registry`. */
export function createAgentMetrics (registry: Registry): AgentMetrics {
  const registers = [registry]
  return {
    connected: new Gauge({ name: 'spokelink_agent_connected', help: '1 while the agent has a session with the exit-node', registers }),
    reconnectsTotal: new Counter({ name: 'spokelink_reconnects_total', help: 'Connection attempts after the first', registers }),
    upstreamDialErrorsTotal: new Counter({ name: 'spokelink_upstream_dial_errors_total', help: 'Failed dials to an upstream', labelNames: ['upstream'], registers }),
    streamsTotal: new Counter({ name: 'spokelink_streams_total', help: 'Data streams by result', labelNames: ['upstream', 'result'], registers }),
    streamsActive: new Gauge({ name: 'spokelink_streams_active', help: 'Data streams currently open', labelNames: ['upstream'], registers }),
    lastConnectError: new Gauge({ name: 'spokelink_agent_last_connect_error', help: 'Always 1, labelled with the code of the last failed connection attempt; absent while connected', labelNames: ['code'], registers }),
    sessionRttSeconds: new Gauge({ name: 'spokelink_agent_session_rtt_seconds', help: 'Round-trip time of the last answered yamux ping to the exit-node', registers }),
    permanentFailure: new Gauge({ name: 'spokelink_agent_permanent_failure', help: '1 while the exit-node refuses this agent for a reason only an operator can fix (token, CA pin, protocol version)', registers }),
    hubStreamsActive: new Gauge({ name: 'spokelink_hub_streams_active', help: 'Local connections carried to a hub service (--hub-service), open now', labelNames: ['service'], registers }),
    hubStreamsTotal: new Counter({ name: 'spokelink_hub_streams_total', help: 'Local connections to a hub service (--hub-service), by result', labelNames: ['service', 'result'], registers }),
    policyDeniedTotal: new Counter({ name: 'spokelink_policy_denied_total', help: 'Requests refused by an upstream\'s HTTP policy (--read-only, --allow), by reason', labelNames: ['upstream', 'reason'], registers }),
  }
}
