import { get } from 'node:http'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { BULK_ACK, BULK_MODE, encodeBulkHeader } from '../peers/bulk-protocol.js'
import type { BulkMode } from '../peers/bulk-protocol.js'
import { writeBytes } from './write-bytes.js'

/** A transfer that makes no progress for this long fails the round instead of hanging the run. */
const STALL_TIMEOUT_MS = 30_000

function openSocket (port: number): Socket {
  return connect({ host: '127.0.0.1', port, noDelay: true, timeout: STALL_TIMEOUT_MS })
}

/**
 * One bulk transfer of `bytes` through `port`; resolves with the milliseconds from connect to the last byte (the
 * sink's acknowledgement for an upload).
 * @throws Error when the connection fails, stalls or ends early.
 */
export async function bulkTransfer (port: number, mode: BulkMode, bytes: number): Promise<number> {
  const started = performance.now()
  return new Promise<number>((resolve, reject) => {
    const socket = openSocket(port)
    let received = 0
    const expected = mode === BULK_MODE.download ? bytes : BULK_ACK.length
    const fail = (err: Error): void => { socket.destroy(); reject(err) }
    socket.on('connect', () => {
      socket.write(encodeBulkHeader({ mode, bytes }))
      if (mode === BULK_MODE.upload) writeBytes(socket, bytes, { end: false })
    })
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received < expected) return
      const ms = performance.now() - started
      socket.destroy()
      resolve(ms)
    })
    socket.on('timeout', () => { fail(new Error(`bulk transfer through port ${port}: no progress for ${STALL_TIMEOUT_MS} ms`)) })
    socket.on('error', fail)
    socket.on('close', () => { fail(new Error(`bulk transfer through port ${port}: closed after ${received} of ${expected} bytes`)) })
  })
}

/** `streams` concurrent transfers of `bytes / streams` each; resolves with MB/s over the whole wall time. */
export async function bulkThroughput (port: number, mode: BulkMode, bytes: number, streams: number): Promise<number> {
  const perStream = Math.floor(bytes / streams)
  const started = performance.now()
  await Promise.all(Array.from({ length: streams }, async () => bulkTransfer(port, mode, perStream)))
  return megabytesPerSecond(perStream * streams, performance.now() - started)
}

/** Bytes over milliseconds, in MB/s (10^6 bytes). */
export function megabytesPerSecond (bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000)
}

/**
 * `GET /bytes/<bytes>` on a new TCP connection (`agent: false`, so `Connection: close`); resolves with the
 * milliseconds from the request to the last body byte.
 * @throws Error on a status other than 200, a short body or a stall.
 */
export async function timedGet (port: number, bytes: number): Promise<number> {
  const started = performance.now()
  return new Promise<number>((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: `/bytes/${bytes}`, agent: false, timeout: STALL_TIMEOUT_MS }, (res) => {
      let received = 0
      res.on('data', (chunk: Buffer) => { received += chunk.length })
      res.on('end', () => {
        const ms = performance.now() - started
        if (res.statusCode !== 200 || received !== bytes) reject(new Error(`GET /bytes/${bytes} through port ${port}: status ${String(res.statusCode)}, ${received} bytes`))
        else resolve(ms)
      })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`GET /bytes/${bytes} through port ${port}: no answer for ${STALL_TIMEOUT_MS} ms`)) })
    req.on('error', reject)
  })
}

/** `count` sequential {@link timedGet}s; resolves with each one's milliseconds. */
export async function sequentialGets (port: number, bytes: number, count: number): Promise<number[]> {
  const samples: number[] = []
  for (let i = 0; i < count; i++) samples.push(await timedGet(port, bytes))
  return samples
}
