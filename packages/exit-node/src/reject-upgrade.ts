import type { Duplex } from 'node:stream'

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
}

/**
 * Answers an upgrade request with a plain HTTP error and a one-line reason, then closes the socket: at once when the
 * answer is flushed (as ws's abortHandshake does), or after `closeTimeoutMs` when the peer does not read it. The
 * control server's sockets allow half-open, so `end()` alone would keep a peer that never closes its side forever.
 */
export function rejectUpgrade (socket: Duplex, status: number, reason: string, headers: Record<string, string> = {}, closeTimeoutMs = 10_000): void {
  const body = `${reason}\n`
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ]
  socket.once('finish', () => { socket.destroy() })
  const timer = setTimeout(() => { socket.destroy() }, closeTimeoutMs).unref()
  socket.once('close', () => { clearTimeout(timer) })
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`)
}
