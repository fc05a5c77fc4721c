/** A method this policy layer can allow; anything else (PUT, DELETE, OPTIONS, CONNECT…) is always refused. */
export type PolicyMethod = 'GET' | 'HEAD' | 'POST'

/** One allowed `METHOD PATH`; a `*` segment matches one segment, a trailing `*` matches one or more. */
export interface PolicyRule {
  method: PolicyMethod
  /** Path segments after the leading `/`; `*` is a wildcard. */
  segments: readonly string[]
}

/** The HTTP policy of one upstream (agent) or hub service (exit-node): its rules and the name shown in a 403. */
export interface HttpPolicy {
  /** The agent's upstream or the exit-node's hub service the policy guards. */
  upstream: string
  /** `read-only` for `--read-only`, `allow` for a custom `--allow` list or a hub service's `allow`. */
  kind: 'read-only' | 'allow'
  rules: readonly PolicyRule[]
  /**
   * What a POST body may be: `form` (`application/x-www-form-urlencoded`, Prometheus' long queries; the agent's
   * upstreams) or `opaque` (any content type streamed through as bytes: remote write's snappy protobuf to a hub
   * service). @default 'form'
   */
  postBody?: 'form' | 'opaque'
}

/**
 * Why a request was refused; the `reason` label of `spokelink_policy_denied_total`, so the set is closed.
 * - `method`/`path`: well-formed, but not on the list.
 * - `target`: not origin-form (`http://x/…`, `x:443`, `*`).
 * - `bad_path`: a path that could normalise into another one (`..`, `.`, `//`, `%`, `\`, `;`, `#`).
 * - `version`: not HTTP/1.1.
 * - `header`: an ambiguous or hop-by-hop trick (duplicate Host/Content-Length/…, Transfer-Encoding other
 *   than `chunked`, no Host).
 * - `expect`, `upgrade`: `Expect:` of any kind, `Upgrade:` or `Connection: upgrade`.
 * - `body`: a body on GET/HEAD, or a POST body that is not a form (unless the policy's `postBody` is `opaque`).
 * - `body_too_large`, `header_too_large`: over the limits.
 * - `malformed`: the HTTP/1.1 parser (llhttp, strict) refused the bytes.
 */
export type DenyReason = typeof DENY_REASONS[number]

/** Every {@link DenyReason}, so an owner can delete all of a metric's series. */
export const DENY_REASONS = [
  'method', 'path', 'target', 'bad_path', 'version', 'header', 'expect', 'upgrade',
  'body', 'body_too_large', 'header_too_large', 'malformed',
] as const

/** The parts of a parsed request head the policy looks at (Node's `IncomingMessage` has them). */
export interface RequestHead {
  method: string
  url: string
  httpVersion: string
  /** `[name, value, name, value, …]` exactly as received. */
  rawHeaders: readonly string[]
}

/** What {@link checkRequestHead} decided. */
export type PolicyDecision =
  | { allowed: true, hasBody: boolean }
  | { allowed: false, reason: DenyReason, detail: string }

const READ_ONLY_GET = [
  '/federate', '/metrics', '/api/v1/query', '/api/v1/query_range', '/api/v1/series', '/api/v1/labels',
  '/api/v1/label/*/values', '/api/v1/metadata', '/-/healthy', '/-/ready',
]
/** Prometheus accepts these as a POST with a form body; Grafana and the hub use it for long queries. */
const READ_ONLY_POST = ['/api/v1/query', '/api/v1/query_range', '/api/v1/series', '/api/v1/labels']

/** The rules of `--read-only`: GET/HEAD of Prometheus' read paths, POST (form body) of its query endpoints. */
export const READ_ONLY_RULES: readonly PolicyRule[] = Object.freeze([
  ...READ_ONLY_GET.flatMap((path) => (['GET', 'HEAD'] as const).map((method) => ({ method, segments: splitPath(path) }))),
  ...READ_ONLY_POST.map((path) => ({ method: 'POST' as const, segments: splitPath(path) })),
])

/**
 * Headers Node keeps only the first of (`joinDuplicateHeaders: false`) plus the framing ones: two of
 * them mean two parties may read two different requests, so a duplicate is refused, never picked.
 */
const SINGLE_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'content-type', 'authorization', 'proxy-authorization',
  'expect', 'upgrade', 'age', 'etag', 'expires', 'from', 'if-modified-since', 'if-unmodified-since',
  'last-modified', 'location', 'max-forwards', 'referer', 'retry-after', 'server', 'user-agent',
])

/** RFC 3986 pchar without `%` (no escapes: the allowed paths never need one) and `;` (path parameters). */
const SEGMENT_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,=:@]+$/

function splitPath (path: string): string[] {
  return path.slice(1).split('/')
}

/** A parsed rule text, or the one-line reason it is not one (the caller names where it came from). */
export type ParsedPolicyRule = { rules: PolicyRule[] } | { error: string }

/**
 * Parses one `METHOD /path` rule (`GET /api/v1/*`, `POST /api/v1/write`), the syntax of the agent's `--allow` and
 * of a hub service's `allow`. A GET rule allows HEAD too.
 */
export function parsePolicyRuleText (text: string): ParsedPolicyRule {
  const match = /^(GET|HEAD|POST) (\/\S*)$/.exec(text.trim())
  const path = match?.[2]
  const method = match?.[1] as PolicyMethod | undefined
  if (method === undefined || path === undefined) {
    return { error: `expected rules like "GET /federate" or "GET /api/v1/*" (GET, HEAD or POST), got "${text.trim().slice(0, 64)}"` }
  }
  const segments = splitPath(path)
  if (checkPathSegments(segments.filter((segment) => segment !== '*')) !== undefined && path !== '/') {
    return { error: `"${path.slice(0, 64)}" is not a plain path (no %, ;, \\, //, . or .. segments)` }
  }
  // A GET rule allows HEAD too: HEAD is the same request without the body.
  return { rules: method === 'GET' ? [{ method, segments }, { method: 'HEAD', segments }] : [{ method, segments }] }
}

/** `undefined` when every segment is a plain, non-empty, non-dot segment; else what is wrong. */
function checkPathSegments (segments: readonly string[]): string | undefined {
  for (const segment of segments) {
    if (segment === '') return 'an empty segment (//)'
    if (segment === '.' || segment === '..') return 'a dot segment'
    if (!SEGMENT_CHARS.test(segment)) return 'an escape or a character outside RFC 3986 pchar'
  }
  return undefined
}

function matches (rule: PolicyRule, method: string, segments: readonly string[]): boolean {
  if (rule.method !== method) return false
  const last = rule.segments.length - 1
  for (let i = 0; i <= last; i++) {
    const want = rule.segments[i]
    const got = segments[i]
    if (got === undefined) return false
    if (want === '*' && i === last) return true
    if (want !== '*' && want !== got) return false
  }
  return segments.length === rule.segments.length
}

function headerValues (rawHeaders: readonly string[]): Map<string, string[]> {
  const headers = new Map<string, string[]>()
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] ?? '').toLowerCase()
    const values = headers.get(name)
    if (values === undefined) headers.set(name, [rawHeaders[i + 1] ?? ''])
    else values.push(rawHeaders[i + 1] ?? '')
  }
  return headers
}

/**
 * Size of the head as sent in canonical form (`NAME: value` lines, CRLF): Node's own `maxHeaderSize`
 * counts differently (a few dozen bytes of slack), so the limit is applied exactly here.
 */
export function requestHeadBytes (head: RequestHead): number {
  let bytes = head.method.length + 1 + head.url.length + ' HTTP/1.1\r\n'.length + 2
  for (let i = 0; i + 1 < head.rawHeaders.length; i += 2) bytes += (head.rawHeaders[i] ?? '').length + 2 + (head.rawHeaders[i + 1] ?? '').length + 2
  return bytes
}

/** The path part of a request target, for matching and for the 403 line (never the query). */
export function targetPath (url: string): string {
  const query = url.indexOf('?')
  return query < 0 ? url : url.slice(0, query)
}

/**
 * Decides whether a parsed request head may reach the upstream. Pure: no I/O, no clock.
 * Ambiguities are refused, never normalised: the upstream must see exactly the request we checked.
 */
export function checkRequestHead (policy: HttpPolicy, head: RequestHead, limits: { maxBodyBytes: number, maxHeaderBytes: number }): PolicyDecision {
  const deny = (reason: DenyReason, detail: string): PolicyDecision => ({ allowed: false, reason, detail })
  if (requestHeadBytes(head) > limits.maxHeaderBytes) return deny('header_too_large', `a request head over ${limits.maxHeaderBytes} bytes`)
  if (head.httpVersion !== '1.1') return deny('version', `HTTP/${head.httpVersion} (only HTTP/1.1)`)
  if (!head.url.startsWith('/')) return deny('target', 'not an origin-form target (/path)')
  const path = targetPath(head.url)
  if (head.url.includes('#')) return deny('bad_path', 'a fragment in the target')
  const segments = splitPath(path)
  const badPath = path === '/' ? undefined : checkPathSegments(segments)
  if (badPath !== undefined) return deny('bad_path', `path with ${badPath}`)

  const headers = headerValues(head.rawHeaders)
  for (const [name, values] of headers) {
    if (values.length > 1 && SINGLE_HEADERS.has(name)) return deny('header', `duplicate ${name} header`)
  }
  if (headers.get('host') === undefined) return deny('header', 'no Host header')
  if (headers.has('expect')) return deny('expect', 'Expect header')
  const connection = (headers.get('connection') ?? []).join(',').toLowerCase().split(',').map((token) => token.trim())
  if (headers.has('upgrade') || connection.includes('upgrade')) return deny('upgrade', 'Upgrade header')
  const transferEncoding = headers.get('transfer-encoding')?.[0]
  if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked') return deny('header', 'Transfer-Encoding other than chunked')
  const contentLengthText = headers.get('content-length')?.[0]
  const contentLength = contentLengthText === undefined ? 0 : Number(contentLengthText)
  const hasBody = transferEncoding !== undefined || contentLength > 0

  if (!policy.rules.some((rule) => rule.method === head.method)) return deny('method', `method ${head.method}`)
  if (!policy.rules.some((rule) => matches(rule, head.method, segments))) return deny('path', 'path not on the list')
  if (head.method !== 'POST') {
    return hasBody ? deny('body', `a body on ${head.method}`) : { allowed: true, hasBody: false }
  }
  const contentType = (headers.get('content-type')?.[0] ?? '').split(';')[0]?.trim().toLowerCase()
  if (hasBody && policy.postBody !== 'opaque' && contentType !== 'application/x-www-form-urlencoded') return deny('body', 'a POST body that is not application/x-www-form-urlencoded')
  if (contentLength > limits.maxBodyBytes) return deny('body_too_large', `a body over ${limits.maxBodyBytes} bytes`)
  return { allowed: true, hasBody }
}
