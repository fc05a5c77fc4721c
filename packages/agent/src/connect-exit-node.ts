import { X509Certificate, createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import type { PeerCertificate, DetailedPeerCertificate } from 'node:tls'
import WebSocket from 'ws'
import { quoteValue } from '@spokelink/auth'
import { PROTOCOL_NAME, ProtocolError, createWebSocketDuplex, generateZeroMask } from '@spokelink/protocol'
import { AgentError } from './errors.js'
import { LOOPBACK_NAME, createLoopbackOnlyLookup, isLoopbackAddress } from './loopback.js'
import type { ResolveAllFunction } from './loopback.js'

/** How to reach and trust an exit-node. */
export interface ConnectOptions {
  /** `wss://host[:port]/connect` (or `ws://` on loopback or with `insecure`). */
  url: string
  token: string
  /** Extra CA certificates (PEM) to trust besides the system ones. */
  caPem?: string | undefined
  /** Pin: the exit-node's chain must contain a certificate with this SHA-256 (hex, of the DER). */
  caSha256?: string | undefined
  /** Allow plain `ws://` to a host that is not a loopback IP literal (or `localhost` resolving only to loopback). */
  insecure: boolean
  handshakeTimeoutMs: number
  maxMessageBytes: number
  signal?: AbortSignal | undefined
  /** Client certificate and key to present (spokes with `requireClientCert`). */
  clientTls?: { certPem: string, keyPem: string } | undefined
  /** Resolver for the `localhost` loopback check (tests inject one). @default dns.lookup */
  resolveAll?: ResolveAllFunction | undefined
}

/** An open WebSocket to the exit-node with its byte-stream adapter already attached. */
export interface ExitNodeConnection {
  ws: WebSocket
  duplex: Duplex
}

/**
 * Checks the URL scheme against the trust settings. Plain ws:// without `insecure` is allowed only to an IP literal
 * in 127.0.0.0/8 or `::1`, or to `localhost` (which {@link connectExitNode} then refuses unless every address it
 * resolves to is loopback). A name is never judged by how it looks: `127.attacker.example` is remote.
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION, SLK_ERR_AGENT_INSECURE
 */
export function checkServerUrl (url: string, insecure: boolean): URL {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--server: expected a URL like wss://hub.example.com/connect, got ${quoteValue(url)}`)
  }
  if (parsed.username !== '' || parsed.password !== '' || parsed.search !== '') {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', '--server: credentials and query strings do not belong in the URL; pass the token with --token or --token-file')
  }
  if (parsed.protocol !== 'wss:' && parsed.protocol !== 'ws:') {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--server: expected a ws:// or wss:// URL, got ${parsed.protocol}//`)
  }
  if (parsed.protocol === 'ws:' && !insecure && !isLoopbackAddress(parsed.hostname) && parsed.hostname !== LOOPBACK_NAME) {
    throw new AgentError('SLK_ERR_AGENT_INSECURE', `--server: refusing plain ws:// to ${parsed.hostname}; use wss:// or pass --insecure if TLS ends at a proxy you trust`)
  }
  if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = '/connect'
  return parsed
}

function chainOf (leaf: DetailedPeerCertificate): PeerCertificate[] {
  const chain: PeerCertificate[] = []
  let cert: DetailedPeerCertificate | undefined = leaf
  while (cert !== undefined && cert.raw !== undefined && !chain.includes(cert)) {
    chain.push(cert)
    const issuer: DetailedPeerCertificate | undefined = cert.issuerCertificate
    cert = issuer === cert ? undefined : issuer
  }
  return chain
}

/**
 * Verifies a TLS peer against a pinned CA fingerprint: the pinned certificate must be in the chain,
 * must have issued the leaf (or be the leaf) and the leaf must name `host`.
 * @throws AgentError SLK_ERR_AGENT_TLS_PIN
 */
export function verifyPinnedPeer (socket: tls.TLSSocket, host: string, caSha256: string, now: Date): void {
  const chain = chainOf(socket.getPeerCertificate(true))
  const fingerprint = (cert: PeerCertificate): string => createHash('sha256').update(cert.raw).digest('hex')
  const pinned = chain.find((cert) => fingerprint(cert) === caSha256.toLowerCase())
  const leafCert = chain[0]
  if (pinned === undefined || leafCert === undefined) {
    throw new AgentError('SLK_ERR_AGENT_TLS_PIN', `exit-node ${host} presented no certificate matching the pinned CA sha256 ${caSha256.slice(0, 12)}…`)
  }
  const leaf = new X509Certificate(leafCert.raw)
  const ca = new X509Certificate(pinned.raw)
  if (leafCert !== pinned && (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey))) {
    throw new AgentError('SLK_ERR_AGENT_TLS_PIN', `exit-node ${host}: its certificate was not issued by the pinned CA`)
  }
  const namesHost = net.isIP(host) === 0 ? leaf.checkHost(host) !== undefined : leaf.checkIP(host) !== undefined
  if (!namesHost) {
    // The names are the pinned CA's own (it signed this leaf), so quoting them is safe; clipped all the same.
    const names = (leaf.subjectAltName ?? 'no subjectAltName').slice(0, 200)
    throw new AgentError('SLK_ERR_AGENT_TLS_PIN', `exit-node certificate does not name ${host} (it names ${names}); add ${host} to the exit-node's --auto-tls-hosts (or its certificate) and restart it, or dial a name it has`)
  }
  if (new Date(leaf.validTo).getTime() < now.getTime() || new Date(leaf.validFrom).getTime() > now.getTime()) {
    throw new AgentError('SLK_ERR_AGENT_TLS_PIN', `exit-node certificate for ${host} is not valid now (valid ${leaf.validFrom} to ${leaf.validTo})`)
  }
}

async function connectPinned (url: URL, caSha256: string, timeoutMs: number, clientTls: { certPem: string, keyPem: string } | undefined): Promise<tls.TLSSocket> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const port = url.port === '' ? 443 : Number(url.port)
  // Verification is ours (the pin), so nothing is sent until it passed: not even the upgrade request.
  const socket = tls.connect({
    host,
    port,
    servername: net.isIP(host) === 0 ? host : undefined,
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1'],
    ...(clientTls === undefined ? {} : { cert: clientTls.certPem, key: clientTls.keyPem }),
  })
  socket.setNoDelay(true)
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new AgentError('SLK_ERR_AGENT_CONNECT', `TLS handshake with ${host}:${port} timed out after ${timeoutMs}ms`)) }, timeoutMs)
      socket.once('secureConnect', () => { clearTimeout(timer); resolve() })
      socket.once('error', (err) => { clearTimeout(timer); reject(new AgentError('SLK_ERR_AGENT_CONNECT', `cannot reach ${host}:${port}: ${err.message}`, { cause: err })) })
    })
    verifyPinnedPeer(socket, host, caSha256, new Date())
  } catch (err) {
    socket.destroy()
    throw err
  }
  return socket
}

async function readBody (res: IncomingMessage, maxBytes: number): Promise<string> {
  let body = ''
  for await (const chunk of res) {
    body += String(chunk)
    if (body.length > maxBytes) break
  }
  return body.slice(0, maxBytes).trim().split('\n')[0] ?? ''
}

async function refusal (res: IncomingMessage, host: string): Promise<Error> {
  const reason = await readBody(res, 200).catch(() => '')
  const status = res.statusCode ?? 0
  if (status === 401) return new AgentError('SLK_ERR_AGENT_UNAUTHORIZED', `exit-node ${host} refused the token (401): ${reason}`)
  if (status === 403) return new AgentError('SLK_ERR_AGENT_FORBIDDEN', `exit-node ${host} refused the token (403): ${reason}`)
  const serverProtocol = res.headers['x-spokelink-protocol']
  if (typeof serverProtocol === 'string' && serverProtocol !== PROTOCOL_NAME) {
    return new ProtocolError('SLK_ERR_PROTO_VERSION_MISMATCH', `exit-node ${host} speaks ${serverProtocol}; this agent speaks ${PROTOCOL_NAME}`)
  }
  return new AgentError('SLK_ERR_AGENT_CONNECT', `exit-node ${host} answered ${status} instead of a WebSocket upgrade: ${reason}`)
}

/**
 * Opens the agent's WebSocket to the exit-node, token in the Authorization header, and attaches
 * the byte-stream adapter synchronously on open so no message is lost.
 * @throws AgentError SLK_ERR_AGENT_UNAUTHORIZED | _FORBIDDEN | _CONNECT | _TLS_PIN, ProtocolError SLK_ERR_PROTO_VERSION_MISMATCH
 */
export async function connectExitNode (options: ConnectOptions): Promise<ExitNodeConnection> {
  const url = checkServerUrl(options.url, options.insecure)
  const host = url.host
  const pinnedSocket = url.protocol === 'wss:' && options.caSha256 !== undefined
    ? await connectPinned(url, options.caSha256, options.handshakeTimeoutMs, options.clientTls)
    : undefined
  const ws = new WebSocket(url, [PROTOCOL_NAME], {
    headers: { authorization: `Bearer ${options.token}` },
    perMessageDeflate: false,
    maxPayload: options.maxMessageBytes,
    handshakeTimeout: options.handshakeTimeoutMs,
    followRedirects: false,
    generateMask: generateZeroMask,
    ...(options.caPem === undefined ? {} : { ca: options.caPem }),
    ...(options.clientTls === undefined ? {} : { cert: options.clientTls.certPem, key: options.clientTls.keyPem }),
    ...(pinnedSocket === undefined ? {} : { createConnection: () => pinnedSocket }),
    // ws passes unknown options on to net.connect; this makes `localhost` prove it is loopback at connect time.
    ...(url.protocol === 'ws:' && !options.insecure && url.hostname === LOOPBACK_NAME ? { lookup: createLoopbackOnlyLookup(options.resolveAll) } : {}),
  })
  return new Promise<ExitNodeConnection>((resolve, reject) => {
    const onAbort = (): void => { ws.terminate(); fail(new AgentError('SLK_ERR_AGENT_CONNECT', 'connect aborted')) }
    function fail (err: Error): void {
      options.signal?.removeEventListener('abort', onAbort)
      reject(err)
    }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    ws.once('unexpected-response', (_req, res) => {
      void refusal(res, host).then((err) => { ws.terminate(); fail(err) })
    })
    ws.once('error', (err) => {
      if (err instanceof AgentError) {
        fail(err)
        return
      }
      const tlsCode = (err as NodeJS.ErrnoException).code ?? ''
      const hint = tlsCode.includes('CERT') || tlsCode.includes('SELF_SIGNED') ? ' (trust its CA with --ca-file, or use a join token that pins it)' : ''
      fail(new AgentError('SLK_ERR_AGENT_CONNECT', `cannot connect to exit-node ${host}: ${err.message}${hint}`, { cause: err }))
    })
    ws.once('open', () => {
      options.signal?.removeEventListener('abort', onAbort)
      // The agent's upstream sockets read into a ReadBufferPool: its buffers come back from these writes.
      const duplex = createWebSocketDuplex(ws, { releaseWrittenChunks: true })
      if (ws.protocol !== PROTOCOL_NAME) {
        ws.terminate()
        reject(new ProtocolError('SLK_ERR_PROTO_VERSION_MISMATCH', `exit-node ${host} accepted no ${PROTOCOL_NAME} subprotocol (got "${ws.protocol}")`))
        return
      }
      resolve({ ws, duplex })
    })
  })
}
