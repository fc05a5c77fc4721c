import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'
import { CONNECT_PATH, PROTOCOL_NAME } from '@spokelink/protocol'
import type { FleetView } from './fleet-view.js'
import type { TargetGroup } from './service-discovery.js'
import { renderStatusPage } from './status-page.js'

/** Whether the exit-node takes new agents: ready while listening and not shutting down. */
export type Readiness = 'ready' | 'starting' | 'shutting down'

function send (res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/** Answers `/healthz` and `/readyz`, which both listeners serve; false for any other path. */
function answerHealth (path: string | undefined, readiness: Readiness, res: ServerResponse): boolean {
  if (path === '/healthz') {
    send(res, 200, 'ok\n')
    return true
  }
  if (path === '/readyz') {
    send(res, readiness === 'ready' ? 200 : 503, `${readiness}\n`)
    return true
  }
  return false
}

function pathOf (req: IncomingMessage): string | undefined {
  return (req.url ?? '/').split('?')[0]
}

/**
 * Plain requests on the port agents dial: health checks and a hint on `/connect`, nothing else. Operators'
 * endpoints list every customer's spoke and labels, so they live on the admin listener only.
 */
export function answerControlRequest (req: IncomingMessage, res: ServerResponse, readiness: Readiness): void {
  if (req.method !== 'GET') { send(res, 405, 'method not allowed\n'); return }
  const path = pathOf(req)
  if (answerHealth(path, readiness, res)) return
  if (path === CONNECT_PATH) { send(res, 426, `${CONNECT_PATH} takes a WebSocket upgrade with subprotocol ${PROTOCOL_NAME}\n`); return }
  send(res, 404, 'not found\n')
}

/** What the admin listener reads; `targetGroups` is built from config only, never from the request. */
export interface AdminSources {
  registry: Registry
  targetGroups: () => TargetGroup[]
  readiness: () => Readiness
  fleet: FleetView
  /** The exit-node's clock, for the page's "as of" line. */
  now: () => Date
}

/** The operators' listener: `/metrics`, `/v1/sd`, `/v1/spokes`, the status page (`/`, `/status`), `/healthz`, `/readyz`. */
export async function answerAdminRequest (req: IncomingMessage, res: ServerResponse, sources: AdminSources): Promise<void> {
  if (req.method !== 'GET') { send(res, 405, 'method not allowed\n'); return }
  const path = pathOf(req)
  if (answerHealth(path, sources.readiness(), res)) return
  if (path === '/metrics') send(res, 200, await sources.registry.metrics(), sources.registry.contentType)
  else if (path === '/v1/sd') send(res, 200, JSON.stringify(sources.targetGroups()), 'application/json')
  else if (path === '/v1/spokes') send(res, 200, JSON.stringify({ spokes: sources.fleet.statuses() }), 'application/json')
  else if (path === '/' || path === '/status') send(res, 200, renderStatusPage(sources.fleet.statuses(), sources.now()), 'text/html; charset=utf-8')
  else send(res, 404, 'not found\n')
}
