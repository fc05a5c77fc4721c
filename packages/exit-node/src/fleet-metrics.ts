import { Counter, Gauge } from 'prom-client'
import type { Registry } from 'prom-client'
import type { SpokeConfig } from '@spokelink/auth'
import { DENY_REASONS } from '@spokelink/http-policy'
import type { FleetView, SpokeStatus } from './fleet-view.js'
import { STREAM_RESULTS } from './metrics.js'
import { HUB_STREAM_RESULTS, UNLISTED_SERVICE } from './hub-services.js'
import type { ExitNodeMetrics } from './metrics.js'

/** A scrape reads every fleet metric; they share one snapshot this young instead of computing it once each. */
const SNAPSHOT_MAX_AGE_MS = 250

/** The per-spoke metrics that are computed at scrape time from a {@link FleetView}. */
export interface FleetMetrics {
  /** Sessions that finished their hello, per spoke; reconnects show as its increase. */
  sessionOpensTotal: Counter<'spoke'>
  /** Rebuilt from the fleet view at each scrape. */
  windowStallsTotal: Counter<'spoke'>
  /** Rebuilt from the fleet view at each scrape; its label names come from `infoLabels`. */
  spokeInfo: Gauge
  /** Drops every series of spokes a reload removed (the fleet gauges rebuild themselves). */
  prune: (removed: readonly SpokeConfig[]) => void
}

/**
 * Registers the fleet metrics on `registry`. Every configured spoke gets `spokelink_spoke_connected` (0 or 1),
 * its sessions and last-seen time, even one that never connected (so `== 0` alerts see it); the gauges are
 * rebuilt from the fleet view at each scrape, so a spoke removed from the spokes file leaves no series behind.
 */
export function createFleetMetrics (registry: Registry, fleet: FleetView, tunnel: ExitNodeMetrics): FleetMetrics {
  const registers = [registry]
  let snapshot: { at: number, statuses: SpokeStatus[] } | undefined
  const statuses = (): SpokeStatus[] => {
    const now = performance.now()
    if (snapshot === undefined || now - snapshot.at > SNAPSHOT_MAX_AGE_MS) snapshot = { at: now, statuses: fleet.statuses() }
    return snapshot.statuses
  }
  const perSpoke = (name: string, help: string, value: (status: SpokeStatus) => number | null): Gauge<'spoke'> => new Gauge({
    name,
    help,
    labelNames: ['spoke'],
    registers,
    collect () {
      this.reset()
      for (const status of statuses()) {
        const v = value(status)
        if (v !== null) this.set({ spoke: status.spoke }, v)
      }
    },
  })
  perSpoke('spokelink_spoke_connected', '1 while the configured spoke has at least one live session, else 0', (s) => s.connected ? 1 : 0)
  perSpoke('spokelink_spoke_sessions', 'Live agent sessions per configured spoke', (s) => s.sessions)
  perSpoke('spokelink_sessions', 'Live agent sessions per configured spoke (same as spokelink_spoke_sessions)', (s) => s.sessions)
  perSpoke('spokelink_spoke_last_seen_timestamp_seconds', 'Unix time the spoke was last connected (now while connected); 0 when never seen since the exit-node started',
    (s) => s.lastSeen === null ? 0 : Date.parse(s.lastSeen) / 1000)
  perSpoke('spokelink_session_rtt_seconds', 'Round-trip time of the spoke\'s yamux pings (the highest over its live sessions)', (s) => s.rttSeconds)
  perSpoke('spokelink_spoke_token_expiry_timestamp_seconds', 'Unix time the soonest-expiring active token of the spoke expires; absent when none expires',
    (s) => s.tokenExpiry === null ? null : Date.parse(s.tokenExpiry) / 1000)
  const windowStallsTotal = new Counter({
    name: 'spokelink_stream_window_stalls_total',
    help: 'Times a stream of the spoke waited for the peer\'s flow-control window',
    labelNames: ['spoke'],
    registers,
    collect () {
      this.reset()
      for (const status of statuses()) this.inc({ spoke: status.spoke }, status.windowStalls)
    },
  })
  const infoLabelNames = fleet.infoLabels.map((name) => `label_${name}`)
  const spokeInfo = new Gauge({
    name: 'spokelink_spoke_info',
    help: 'Always 1: the agent version and the allow-listed hello labels (--info-labels) of the spoke\'s newest session',
    labelNames: ['spoke', 'agent_version', ...infoLabelNames],
    registers,
    collect () {
      this.reset()
      for (const status of statuses()) {
        if (status.lastSeen === null) continue
        const labels: Record<string, string> = { spoke: status.spoke, agent_version: status.agentVersion }
        for (const name of fleet.infoLabels) labels[`label_${name}`] = status.labels[name] ?? ''
        this.set(labels, 1)
      }
    },
  })
  const sessionOpensTotal = new Counter({ name: 'spokelink_session_opens_total', help: 'Agent sessions that finished their hello, per spoke', labelNames: ['spoke'], registers })
  return {
    sessionOpensTotal,
    windowStallsTotal,
    spokeInfo,
    prune (removed) {
      snapshot = undefined
      // prom-client removes exact label sets only, so each combination the tunnel metrics use is named.
      for (const { name: spoke, ports, hubServices } of removed) {
        for (const service of [...(hubServices ?? []).map((entry) => entry.name), UNLISTED_SERVICE]) {
          tunnel.hubStreamsActive.remove({ spoke, service })
          for (const result of HUB_STREAM_RESULTS) tunnel.hubStreamsTotal.remove({ spoke, service, result })
          for (const direction of ['to_hub', 'to_spoke']) tunnel.hubBytesTotal.remove({ spoke, service, direction })
          for (const reason of DENY_REASONS) tunnel.hubPolicyDeniedTotal.remove({ spoke, service, reason })
        }
        sessionOpensTotal.remove({ spoke })
        tunnel.muxProtocolErrorsTotal.remove({ spoke })
        for (const direction of ['in', 'out']) tunnel.bytesTotal.remove({ spoke, direction })
        for (const { upstream } of ports) {
          tunnel.streamsActive.remove({ spoke, upstream })
          tunnel.streamsOpenedTotal.remove({ spoke, upstream })
          tunnel.streamDurationSeconds.remove({ spoke, upstream })
          for (const result of STREAM_RESULTS) tunnel.streamsTotal.remove({ spoke, upstream, result })
        }
      }
    },
  }
}
