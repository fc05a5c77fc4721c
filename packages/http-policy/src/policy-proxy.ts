import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { checkRequestHead, targetPath } from './http-policy.js'
import type { DenyReason, HttpPolicy } from './http-policy.js'

/** Limits of a {@link PolicyProxy}. */
export interface PolicyProxyOptions {
  /** Largest request head (request line and headers, CRLF each, and the blank line); more is refused as `header_too_large`. @default 16384 */
  maxHeaderBytes?: number
  /**
   * Largest request body (a POST query's form, or an opaque body such as a remote write batch); more is refused
   * as `body_too_large`. @default 1048576
   */
  maxBodyBytes?: number
  /** Most headers in one request; more are refused as `header_too_large`. @default 100 */
  maxHeadersCount?: number
  /** Keep-alive connections to the upstream, at most (requests beyond wait for one). @default 64 */
  maxUpstreamSockets?: number
}

/** Defaults of {@link PolicyProxyOptions}. */
export const POLICY_PROXY_DEFAULTS = {
  maxHeaderBytes: 16 * 1024,
  maxBodyBytes: 1024 * 1024,
  maxHeadersCount: 100,
  maxUpstreamSockets: 64,
} as const satisfies Required<PolicyProxyOptions>

/** One refused request, as the owner of the proxy counts and logs it. */
export interface PolicyDenial {
  streamId: number
  method: string
  /** The target's path (never the query), clipped to 128 characters. */
  path: string
  reason: DenyReason
}

/** What a {@link PolicyProxy} reports to its owner (the agent's or the exit-node's metrics and logs). */
export interface PolicyProxyDeps {
  /** Where requests go: the agent's upstream, or the exit-node's hub service address. */
  target: { host: string, port: number }
  /** Names the target in a 403 line: `upstream prometheus`, `hub service remote-write`. */
  subject: string
  /** Called once per refused request. */
  onDenied: (denial: PolicyDenial) => void
  /** Called when a request could not reach the target (answered 502). */
  onTargetError: () => void
  /** Called once for each new connection to the target (to meter or time it out). */
  onTargetSocket?: (socket: Socket) => void
  logger: { debug: (fields: object, msg: string) => void }
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the framing ones we set ourselves; never forwarded either way. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length'])
const MAX_LOGGED_PATH = 128

/** What a stream under policy remembers between its requests. */
interface StreamState {
  id: number
  /** Requests are forwarded one at a time, in order; this is the end of the queue. */
  queue: Promise<void>
  /** Set once a request was refused: the stream closes and nothing after it is forwarded. */
  refused: boolean
}

/**
 * Serves data streams of one upstream under an {@link HttpPolicy}. Each stream is handed to a Node
 * `http.Server` (llhttp, strict: no lenient flags), which parses every request on it for the stream's
 * whole life — keep-alive, pipelined, chunked, split over any number of frames. Allowed requests are
 * forwarded over a keep-alive `http.Agent`; refused ones get a 403 and close the stream, and never reach
 * the upstream. Response bodies stream through with backpressure; a POST's form body (at most `maxBodyBytes`) is
 * read whole before it is sent, so the upstream never sees half a checked request; under a policy whose `postBody`
 * is `opaque` (the exit-node's hub services), the body streams through as bytes, counted against the same cap.
 */
export class PolicyProxy {
  readonly #policy: HttpPolicy
  readonly #options: Required<PolicyProxyOptions>
  readonly #server: http.Server
  readonly #agent: http.Agent
  readonly #deps: PolicyProxyDeps
  readonly #streams = new WeakMap<Duplex, StreamState>()
  readonly #targetSockets = new WeakSet<Socket>()

  constructor (policy: HttpPolicy, options: PolicyProxyOptions, deps: PolicyProxyDeps) {
    this.#policy = policy
    this.#options = { ...POLICY_PROXY_DEFAULTS, ...options }
    this.#deps = deps
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: this.#options.maxUpstreamSockets, maxFreeSockets: this.#options.maxUpstreamSockets, scheduling: 'lifo' })
    this.#server = http.createServer({
      insecureHTTPParser: false,
      // Checked by the policy instead, so a missing Host is a counted 403 like every other refusal.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      maxHeaderSize: this.#options.maxHeaderBytes,
      noDelay: false,
    })
    this.#server.maxHeadersCount = this.#options.maxHeadersCount
    // A stream's life is the exit-node's business (idle limits, the client's own timeouts), not Node's.
    this.#server.keepAliveTimeout = 0
    this.#server.timeout = 0
    this.#server.on('request', this.#onRequest)
    // Listening to these stops Node answering `100 Continue` or `417` itself: the policy refuses them.
    this.#server.on('checkContinue', this.#onRequest)
    this.#server.on('checkExpectation', this.#onRequest)
    this.#server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      this.#refuseRaw(socket, req.method ?? 'CONNECT', req.url ?? '', 'target')
    })
    this.#server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      // Node reports the stream's own errors (a reset from the exit-node) here too: those are no refusal.
      if (err.code?.startsWith('HPE_') !== true) {
        socket.destroy()
        return
      }
      const reason: DenyReason = err.code === 'HPE_HEADER_OVERFLOW' ? 'header_too_large' : 'malformed'
      this.#refuseRaw(socket, '-', '-', reason)
    })
  }

  /** Serves one accepted stream (its OK status already written) until it closes. */
  serve (stream: Duplex, streamId: number): void {
    this.#streams.set(stream, { id: streamId, queue: Promise.resolve(), refused: false })
    this.#server.emit('connection', stream)
  }

  /** Closes the idle upstream connections. */
  close (): void {
    this.#agent.destroy()
  }

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const state = this.#streams.get(req.socket)
    if (state === undefined) {
      res.destroy()
      return
    }
    state.queue = state.queue.then(async () => { await this.#handle(state, req, res) }).catch((err: unknown) => {
      this.#deps.logger.debug({ streamId: state.id, upstream: this.#policy.upstream, err }, 'policy request failed')
      res.destroy()
    })
  }

  async #handle (state: StreamState, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (state.refused) {
      // A request pipelined behind a refused one: the stream is closing, nothing more goes upstream.
      res.destroy()
      return
    }
    const head = { method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, rawHeaders: req.rawHeaders }
    const decision = checkRequestHead(this.#policy, head, { maxBodyBytes: this.#options.maxBodyBytes, maxHeaderBytes: this.#options.maxHeaderBytes })
    if (!decision.allowed) {
      this.#refuse(state, req, res, decision.reason)
      return
    }
    if (decision.hasBody && this.#policy.postBody === 'opaque') {
      await this.#forward(req, res, undefined, state)
      return
    }
    let body: Buffer | undefined
    if (decision.hasBody) {
      body = await readBody(req, this.#options.maxBodyBytes)
      if (body === undefined) {
        this.#refuse(state, req, res, 'body_too_large')
        return
      }
    }
    await this.#forward(req, res, body)
  }

  /**
   * Sends a checked request on: with `body` (a form read whole), or, when `streaming` is given, with the
   * request's own body streamed through as bytes, counted against `maxBodyBytes` (its Content-Length was checked
   * already; a chunked body over the cap is cut, so the target sees an unfinished request, never a whole one).
   */
  async #forward (req: IncomingMessage, res: ServerResponse, body: Buffer | undefined, streaming?: StreamState): Promise<void> {
    const headers = forwardedHeaders(req.rawHeaders)
    if (body !== undefined) headers.push(['Content-Length', String(body.length)])
    const length = req.headers['content-length']
    if (streaming !== undefined && length !== undefined && req.headers['transfer-encoding'] === undefined) headers.push(['Content-Length', length])
    const upstreamReq = http.request({
      agent: this.#agent,
      host: this.#deps.target.host,
      port: this.#deps.target.port,
      method: req.method,
      path: req.url,
      headers: Object.fromEntries([...groupHeaders(headers)].map(([name, values]) => [name, values.length === 1 ? values[0] ?? '' : values])),
      setHost: false,
    })
    const responded = new Promise<IncomingMessage>((resolve, reject) => {
      upstreamReq.once('response', resolve)
      upstreamReq.once('error', reject)
    })
    upstreamReq.on('socket', (socket: Socket) => {
      if (this.#targetSockets.has(socket)) return
      this.#targetSockets.add(socket)
      this.#deps.onTargetSocket?.(socket)
    })
    let tooLarge = false
    if (streaming === undefined) upstreamReq.end(body)
    else {
      streamBody(req, upstreamReq, this.#options.maxBodyBytes, () => {
        tooLarge = true
        upstreamReq.destroy()
      })
    }
    let upstreamRes: IncomingMessage
    try {
      upstreamRes = await responded
    } catch (err) {
      if (tooLarge && streaming !== undefined) {
        this.#refuse(streaming, req, res, 'body_too_large')
        return
      }
      this.#deps.onTargetError()
      const code = err instanceof Error && 'code' in err ? String(err.code) : 'error'
      writeLine(res, 502, `spokelink: ${this.#deps.subject} failed: ${code}\n`)
      return
    }
    const responseHeaders = forwardedHeaders(upstreamRes.rawHeaders)
    const responseLength = upstreamRes.headers['content-length']
    // Without its length, Node frames the body itself (chunked to an HTTP/1.1 client).
    if (responseLength !== undefined && upstreamRes.headers['transfer-encoding'] === undefined) responseHeaders.push(['Content-Length', responseLength])
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, responseHeaders.flat())
    await forwardBody(upstreamRes, res)
  }

  #refuse (state: StreamState, req: IncomingMessage, res: ServerResponse, reason: DenyReason): void {
    state.refused = true
    const method = req.method ?? '-'
    const path = clip(targetPath(req.url ?? ''))
    this.#count(state.id, method, path, reason)
    res.shouldKeepAlive = false
    writeLine(res, 403, this.#denyLine(method, path), reason)
  }

  /** Answers on the raw stream where Node has no response object (parse errors, CONNECT). */
  #refuseRaw (socket: Duplex, method: string, url: string, reason: DenyReason): void {
    const state = this.#streams.get(socket)
    const path = clip(targetPath(url))
    this.#count(state?.id ?? -1, method, path, reason)
    if (state === undefined || !socket.writable) {
      socket.destroy()
      return
    }
    state.refused = true
    const body = method === '-' ? `spokelink: malformed request denied by ${this.#policy.kind} policy on ${this.#deps.subject} (${reason})\n` : this.#denyLine(method, path)
    // Behind a response still being sent, a raw 403 would corrupt it: the stream is cut instead.
    void state.queue.then(() => {
      if (!socket.writable) return
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nSpokelink-Policy-Reason: ${reason}\r\n\r\n${body}`)
    })
  }

  #denyLine (method: string, path: string): string {
    return `spokelink: ${method} ${path} denied by ${this.#policy.kind} policy on ${this.#deps.subject}\n`
  }

  #count (streamId: number, method: string, path: string, reason: DenyReason): void {
    this.#deps.onDenied({ streamId, method, path, reason })
  }
}

function clip (path: string): string {
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}...` : path
}

function writeLine (res: ServerResponse, status: number, line: string, reason?: DenyReason): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(line),
    Connection: 'close',
    ...(reason === undefined ? {} : { 'Spokelink-Policy-Reason': reason }),
  })
  res.end(line)
}

/** `[name, value]` pairs of `rawHeaders` without hop-by-hop ones, nor those the Connection header names. */
function forwardedHeaders (rawHeaders: readonly string[]): Array<[string, string]> {
  const drop = new Set(HOP_BY_HOP)
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] ?? '').toLowerCase() !== 'connection') continue
    for (const token of (rawHeaders[i + 1] ?? '').split(',')) drop.add(token.trim().toLowerCase())
  }
  const pairs: Array<[string, string]> = []
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] ?? ''
    if (!drop.has(name.toLowerCase())) pairs.push([name, rawHeaders[i + 1] ?? ''])
  }
  return pairs
}

function groupHeaders (pairs: ReadonlyArray<[string, string]>): Map<string, string[]> {
  const grouped = new Map<string, string[]>()
  for (const [name, value] of pairs) {
    const values = grouped.get(name)
    if (values === undefined) grouped.set(name, [value])
    else values.push(value)
  }
  return grouped
}

/**
 * Copies the upstream's response body to the client with backpressure (the client's full buffer pauses the
 * upstream socket); resolves once the response finished, rejects when either side failed first.
 * Why not `pipeline()`: it costs ~100 µs of CPU per call (see the protocol's `relay()`), paid per request here.
 */
async function forwardBody (from: IncomingMessage, to: ServerResponse): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error): void => {
      from.destroy()
      to.destroy()
      reject(err)
    }
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause()
    })
    to.on('drain', () => { from.resume() })
    from.once('end', () => { to.end() })
    from.once('error', fail)
    from.once('aborted', () => { fail(new Error('upstream response aborted')) })
    to.once('error', fail)
    to.once('close', () => {
      if (to.writableFinished) resolve()
      else fail(new Error('client closed before the response finished'))
    })
  })
}

/**
 * Copies a request body to the target with backpressure, counting it: past `maxBytes` it stops and calls
 * `onTooLarge` (which cuts the target request) instead of sending more.
 */
function streamBody (from: IncomingMessage, to: http.ClientRequest, maxBytes: number, onTooLarge: () => void): void {
  let bytes = 0
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length
    if (bytes > maxBytes) {
      from.off('data', onData)
      from.pause()
      onTooLarge()
      return
    }
    if (!to.write(chunk)) from.pause()
  }
  from.on('data', onData)
  to.on('drain', () => { from.resume() })
  from.once('end', () => { if (bytes <= maxBytes) to.end() })
  from.once('aborted', () => { to.destroy() })
}

/**
 * Reads a request body whole, or resolves `undefined` as soon as it passes `maxBytes` (the rest stays
 * unread: the stream is closed after the 403, so it never becomes a request of its own).
 */
async function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let bytes = 0
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length
      if (bytes <= maxBytes) {
        chunks.push(chunk)
        return
      }
      done()
      req.pause()
      resolve(undefined)
    }
    const onEnd = (): void => {
      done()
      resolve(Buffer.concat(chunks, bytes))
    }
    const onError = (err: Error): void => {
      done()
      reject(err)
    }
    const done = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('aborted', onAborted)
    }
    const onAborted = (): void => { onError(new Error('request aborted')) }
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', onError)
    req.once('aborted', onAborted)
  })
}
