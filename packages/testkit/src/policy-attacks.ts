/**
 * One request a read-only Prometheus policy must refuse, as the raw bytes a hostile hub would send.
 * `marker` occurs only in this request: if it ever shows in the upstream's received bytes, the
 * request (or part of it) got through.
 */
export interface PolicyAttack {
  name: string
  raw: string
  marker: string
  /** The `reason` label the agent counts it under. */
  reason: string
}

const HOST = 'Host: spoke.example\r\n'

function attack (name: string, reason: string, build: (marker: string) => string): PolicyAttack {
  const marker = `atk-${name}`
  return { name, reason, marker, raw: build(marker) }
}

/**
 * The list of forbidden and ambiguous requests (issue 10, part 1), each a single request on a
 * fresh connection. Every one must get `403` and never reach the upstream.
 */
export const POLICY_ATTACKS: readonly PolicyAttack[] = [
  attack('admin-delete', 'path', (m) => `POST /api/v1/admin/tsdb/delete_series?match[]=up&${m} HTTP/1.1\r\n${HOST}Content-Length: 0\r\n\r\n`),
  attack('snapshot', 'path', (m) => `POST /api/v1/admin/tsdb/snapshot?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n`),
  attack('quit', 'method', (m) => `PUT /-/quit?${m} HTTP/1.1\r\n${HOST}Content-Length: 0\r\n\r\n`),
  attack('reload', 'path', (m) => `POST /-/reload?${m} HTTP/1.1\r\n${HOST}Content-Length: 0\r\n\r\n`),
  attack('delete', 'method', (m) => `DELETE /api/v1/series?match[]=up&${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('status-config', 'path', (m) => `GET /api/v1/status/config?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('cl-te', 'malformed', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nquery=up`),
  attack('te-cl', 'malformed', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n0\r\n\r\nquery=up`),
  attack('dup-cl-equal', 'malformed', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\nContent-Length: 8\r\n\r\nquery=up`),
  attack('dup-cl-differ', 'malformed', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\nContent-Length: 0\r\n\r\nquery=up`),
  attack('te-gzip', 'header', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`),
  attack('obs-fold', 'malformed', (m) => `GET /federate?${m} HTTP/1.1\r\n${HOST}X-Folded: a\r\n b\r\n\r\n`),
  attack('bare-lf', 'malformed', (m) => `GET /federate?${m} HTTP/1.1\nHost: spoke.example\n\n`),
  attack('bare-lf-header', 'malformed', (m) => `GET /federate?${m} HTTP/1.1\r\nHost: spoke.example\nX-A: b\r\n\r\n`),
  attack('absolute-form', 'target', (m) => `GET http://spoke.example/federate?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('authority-form', 'target', (m) => `CONNECT ${m}.example:9090 HTTP/1.1\r\nHost: ${m}.example:9090\r\n\r\n`),
  attack('options-star', 'target', (m) => `OPTIONS * HTTP/1.1\r\n${HOST}X-Marker: ${m}\r\n\r\n`),
  attack('dot-dot', 'bad_path', (m) => `GET /api/v1/../admin/tsdb/snapshot?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('federate-dot-dot', 'bad_path', (m) => `GET /federate/../-/quit?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('pct-dot-dot', 'bad_path', (m) => `GET /api/v1/%2e%2e/status/config?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('pct-dot-dot-upper', 'bad_path', (m) => `GET /api/v1/label/%2E%2E/%2E%2E/status/config?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('pct-slash', 'bad_path', (m) => `GET /api/v1/label/x%2F..%2F..%2Fstatus%2Fconfig/values?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('pct-unreserved', 'bad_path', (m) => `GET /%66ederate?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('double-slash', 'bad_path', (m) => `GET //api/v1/status/config?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('inner-double-slash', 'bad_path', (m) => `GET /api/v1//query?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('dot-segment', 'bad_path', (m) => `GET /./federate?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('semicolon', 'bad_path', (m) => `GET /federate;x=/../-/quit?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('backslash', 'bad_path', (m) => `GET /federate\\..\\-\\quit?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('fragment', 'bad_path', (m) => `GET /federate#${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('lower-case-method', 'malformed', (m) => `get /federate?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('mixed-case-method', 'malformed', (m) => `Get /federate?${m} HTTP/1.1\r\n${HOST}\r\n`),
  attack('expect-continue', 'expect', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\nquery=up`),
  attack('expect-other', 'expect', (m) => `GET /federate?${m} HTTP/1.1\r\n${HOST}Expect: spokelink\r\n\r\n`),
  attack('upgrade-h2c', 'upgrade', (m) => `GET /federate?${m} HTTP/1.1\r\n${HOST}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`),
  attack('upgrade-websocket', 'upgrade', (m) => `GET /api/v1/query?${m} HTTP/1.1\r\n${HOST}Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`),
  attack('connection-upgrade-only', 'upgrade', (m) => `GET /federate?${m} HTTP/1.1\r\n${HOST}Connection: keep-alive, upgrade\r\n\r\n`),
  attack('dup-host', 'header', (m) => `GET /federate?${m} HTTP/1.1\r\n${HOST}Host: admin.example\r\n\r\n`),
  attack('no-host', 'header', (m) => `GET /federate?${m} HTTP/1.1\r\n\r\n`),
  attack('http-1.0', 'version', (m) => `GET /federate?${m} HTTP/1.0\r\n${HOST}\r\n`),
  attack('get-with-body', 'body', (m) => `GET /federate?${m} HTTP/1.1\r\n${HOST}Content-Length: 8\r\n\r\nquery=up`),
  attack('post-json', 'body', (m) => `POST /api/v1/query?${m} HTTP/1.1\r\n${HOST}Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{"query":"up"}\r\n`),
  attack('post-federate', 'path', (m) => `POST /federate?${m} HTTP/1.1\r\n${HOST}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n`),
  attack('http2-preface', 'malformed', (m) => `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n${m}`),
]
