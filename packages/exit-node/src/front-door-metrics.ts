import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'

/** Metrics of the control port's limits (unauthenticated connections, failed-auth budget, sessions per spoke). */
export interface FrontDoorMetrics {
  refusedTotal: Counter<'reason'>
  timeoutsTotal: Counter<'phase'>
  unauthenticated: Gauge
}

/** Reasons of `spokelink_control_refused_total`; a fixed set, so the label stays bounded. */
export type FrontDoorRefusal = 'unauthenticated_limit' | 'unauthenticated_source_limit' | 'failed_auth_budget' | 'session_limit'

/** Registers the front-door metrics on `registry`. */
export function createFrontDoorMetrics (registry: Registry): FrontDoorMetrics {
  const registers = [registry]
  return {
    refusedTotal: new Counter({ name: 'spokelink_control_refused_total', help: 'Control-port connections and sessions refused by a limit, by reason', labelNames: ['reason'], registers }),
    timeoutsTotal: new Counter({ name: 'spokelink_control_timeouts_total', help: 'Control-port connections closed for not finishing the TLS handshake or the request headers in time', labelNames: ['phase'], registers }),
    unauthenticated: new Gauge({ name: 'spokelink_control_unauthenticated_connections', help: 'Control-port connections accepted whose upgrade is not accepted yet', registers }),
  }
}
