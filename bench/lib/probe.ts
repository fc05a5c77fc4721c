import { get } from 'node:http'
import { connect } from 'node:net'
import { waitFor } from '@spokelink/testkit'
import { BULK_ACK, BULK_MODE, encodeBulkHeader } from '../peers/bulk-protocol.js'

/** Resolves true when `GET /bytes/1` on `port` answers 200 with one byte, false on any failure. */
export async function isServingHttp (port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/bytes/1', agent: false, timeout: 2000 }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => { bytes += chunk.length })
      res.on('end', () => { resolve(res.statusCode === 200 && bytes === 1) })
      res.on('error', () => { resolve(false) })
    })
    req.on('timeout', () => { req.destroy() })
    req.on('error', () => { resolve(false) })
  })
}

/** Waits until an HTTP GET through `port` reaches the upstream, so the whole tunnel is up. */
export async function waitUntilForwarding (port: number, what: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(async () => isServingHttp(port), { what: `${what} to forward port ${port}`, timeoutMs, intervalMs: 100 })
}

/** Resolves true when a zero-byte upload through `port` is acknowledged by the bulk upstream, false on any failure. */
export async function isServingBulk (port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true, timeout: 2000 })
    socket.on('connect', () => { socket.write(encodeBulkHeader({ mode: BULK_MODE.upload, bytes: 0 })) })
    socket.on('data', (chunk: Buffer) => {
      resolve(chunk.equals(BULK_ACK))
      socket.destroy()
    })
    socket.on('timeout', () => { socket.destroy() })
    socket.on('error', () => { resolve(false) })
    socket.on('close', () => { resolve(false) })
  })
}

/** Waits until both entry ports of a system reach the upstream. */
export async function waitUntilForwardingBoth (ports: { bulkPort: number, httpPort: number }, what: string, timeoutMs = 30_000): Promise<void> {
  await waitUntilForwarding(ports.httpPort, what, timeoutMs)
  await waitFor(async () => isServingBulk(ports.bulkPort), { what: `${what} to forward port ${ports.bulkPort}`, timeoutMs, intervalMs: 100 })
}

/** Resolves true when a TCP connection to `port` is accepted, false when refused. */
export async function isAccepting (port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.on('connect', () => { socket.destroy(); resolve(true) })
    socket.on('error', () => { resolve(false) })
  })
}

/** Waits until a server (sshd, frps, chisel server) accepts TCP connections on `port`, so its client's first dial works. */
export async function waitUntilAccepting (port: number, what: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => isAccepting(port), { what: `${what} to accept on port ${port}`, timeoutMs, intervalMs: 50 })
}
