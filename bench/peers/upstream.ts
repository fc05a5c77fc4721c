/**
 * The upstream every system under test forwards to, run as its own child process so the load generator and the
 * upstream never share an event loop. Prints one JSON line `{"bulkPort":…,"httpPort":…}` once both listen, then
 * serves until stdin closes or a signal arrives.
 *
 * - bulk (TCP): the client sends a 9-byte request, `U` or `D` then a uint64 BE byte count. `U`: the server reads
 *   that many bytes and answers one byte. `D`: the server writes that many bytes. A length header instead of a
 *   half-close, because not every peer under test forwards a half-close.
 * - http: `GET /bytes/<n>` answers `n` bytes (`Content-Length`), so one server serves the 2 KB and 5 MB GETs.
 */
import { createServer as createHttpServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:net'
import type { Socket } from 'node:net'
import { listenLoopback } from '@spokelink/testkit'
import { BULK_ACK, BULK_HEADER_BYTES, BULK_MODE, parseBulkHeader } from './bulk-protocol.js'
import { writeBytes } from '../lib/write-bytes.js'

const MAX_HTTP_BODY_BYTES = 64 * 1024 * 1024

function serveBulk (socket: Socket): void {
  socket.setNoDelay(true)
  // A readiness probe or an aborted round closes early; that is not the upstream's error.
  socket.on('error', () => {})
  let header = Buffer.alloc(0)
  let expected = -1
  let received = 0
  socket.on('data', (chunk: Buffer) => {
    if (expected < 0) {
      header = Buffer.concat([header, chunk])
      if (header.length < BULK_HEADER_BYTES) return
      let request
      try {
        request = parseBulkHeader(header)
      } catch {
        // Not a bulk client (a port scan, a probe): drop it.
        socket.destroy()
        return
      }
      const rest = header.length - BULK_HEADER_BYTES
      if (request.mode === BULK_MODE.download) {
        writeBytes(socket, request.bytes, { end: true })
        return
      }
      expected = request.bytes
      received = rest
    } else {
      received += chunk.length
    }
    if (received >= expected) socket.end(BULK_ACK)
  })
}

function serveHttp (req: IncomingMessage, res: ServerResponse): void {
  const match = /^\/bytes\/(\d+)$/.exec(req.url ?? '')
  const bytes = match?.[1] === undefined ? NaN : Number(match[1])
  if (!Number.isSafeInteger(bytes) || bytes > MAX_HTTP_BODY_BYTES) {
    res.writeHead(404).end()
    return
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes })
  writeBytes(res, bytes, { end: true })
}

async function main (): Promise<void> {
  const bulk = createServer({ noDelay: true }, serveBulk)
  const http = createHttpServer({ noDelay: true, keepAliveTimeout: 1000 }, serveHttp)
  http.on('connection', (socket: Socket) => { socket.on('error', () => {}) })
  const [bulkPort, httpPort] = await Promise.all([listenLoopback(bulk), listenLoopback(http)])
  process.stdout.write(JSON.stringify({ bulkPort, httpPort }) + '\n')
  const stop = (): void => { process.exit(0) }
  process.stdin.on('end', stop).on('close', stop).resume()
  process.on('SIGTERM', stop).on('SIGINT', stop)
}

await main()
