import { randomBytes } from 'node:crypto'
import net from 'node:net'

/** What a server answered on a raw TCP connection. */
export interface RawHttpResponse {
  /** Everything the server sent, as latin1. */
  raw: string
  /** The status code of the first line, 0 when there was none. */
  status: number
  /** Header names in lower case. */
  headers: Record<string, string>
  body: string
}

/** Options of {@link rawHttpExchange}. */
export interface RawHttpExchangeOptions {
  /** Source address of the connection (any of 127.0.0.0/8 on loopback), to act as another client. */
  localAddress?: string
  /** @default 5000 */
  timeoutMs?: number
}

/**
 * Writes `request` on a fresh TCP connection to 127.0.0.1:`port` and reads until the server closes it.
 * A reset counts as a close (a server cutting off a request it will not read may reset).
 * @throws Error when the server has not closed the connection within `timeoutMs`
 */
export async function rawHttpExchange (port: number, request: string | Buffer, options: RawHttpExchangeOptions = {}): Promise<RawHttpResponse> {
  const timeoutMs = options.timeoutMs ?? 5000
  const socket = net.connect({ host: '127.0.0.1', port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => { /* a reset is a close here */ })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`the server did not close the connection within ${timeoutMs} ms`)) }, timeoutMs)
      socket.once('close', () => { clearTimeout(timer); resolve() })
      socket.write(request)
    })
  } finally {
    socket.destroy()
  }
  return parseRawHttpResponse(Buffer.concat(chunks).toString('latin1'))
}

/** Splits a raw HTTP/1.1 response into status, lower-cased headers and body. */
export function parseRawHttpResponse (raw: string): RawHttpResponse {
  const [head = '', ...rest] = raw.split('\r\n\r\n')
  const [statusLine = '', ...headerLines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { raw, status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1] ?? 0), headers, body: rest.join('\r\n\r\n') }
}

/**
 * A WebSocket upgrade request for `path` offering `protocol`, with `headers` added (a null value drops a default
 * header, e.g. `{ 'Sec-WebSocket-Protocol': null }`).
 */
export function webSocketUpgradeRequest (port: number, protocol: string, headers: Record<string, string | null> = {}, path = '/connect'): string {
  const all: Record<string, string | null> = {
    Host: `127.0.0.1:${port}`,
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Protocol': protocol,
    ...headers,
  }
  const lines = Object.entries(all).filter((entry): entry is [string, string] => entry[1] !== null).map(([k, v]) => `${k}: ${v}`)
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}
