import type { WebSocket } from 'ws'

/** Writes `chunks` as one binary WebSocket frame; `callback` runs once the socket took the last chunk. */
export type BinaryFrameWriter = (chunks: readonly Buffer[], bytes: number, callback: (err?: Error | null) => void) => void

/** The parts of `ws`'s WebSocket (ws 8.x, private) that {@link createBinaryFrameWriter} needs. */
interface WsInternals {
  _socket: { cork: () => void, uncork: () => void, write: (chunk: Buffer, cb?: (err?: Error | null) => void) => boolean }
  _sender: { _state: number, _queue: unknown[] }
  _isServer: boolean
}

// RFC 6455 §5.2.
const FIN_BINARY = 0x82
const MASK_BIT = 0x80
const LENGTH_16 = 126
const LENGTH_64 = 127
const MAX_7_BIT = 125
const MAX_16_BIT = 0xffff
/** ws's Sender state when nothing of its own is queued (lib/sender.js). */
const SENDER_IDLE = 0

function hasInternals (ws: WebSocket): boolean {
  const w = ws as unknown as Partial<Record<keyof WsInternals, unknown>>
  const socket = w._socket as Record<string, unknown> | null | undefined
  const sender = w._sender as Record<string, unknown> | null | undefined
  return typeof w._isServer === 'boolean' && typeof socket?.write === 'function' && typeof socket.cork === 'function' &&
    typeof socket.uncork === 'function' && typeof sender?._state === 'number' && Array.isArray(sender._queue)
}

/**
 * The header of a final binary frame of `bytes` payload. From a client it carries the MASK bit and an
 * all-zero key, which leaves the payload unchanged (RFC 6455 §5.3: XOR with 0); see {@link generateZeroMask}
 * for why the agent may use a constant key.
 */
export function encodeBinaryFrameHeader (bytes: number, masked: boolean): Buffer {
  const lengthBytes = bytes > MAX_16_BIT ? 8 : bytes > MAX_7_BIT ? 2 : 0
  const header = Buffer.allocUnsafe(2 + lengthBytes + (masked ? 4 : 0))
  header[0] = FIN_BINARY
  header[1] = (masked ? MASK_BIT : 0) | (lengthBytes === 8 ? LENGTH_64 : lengthBytes === 2 ? LENGTH_16 : bytes)
  if (lengthBytes === 2) header.writeUInt16BE(bytes, 2)
  else if (lengthBytes === 8) {
    header.writeUInt32BE(Math.floor(bytes / 2 ** 32), 2)
    header.writeUInt32BE(bytes >>> 0, 6)
  }
  if (masked) header.fill(0, 2 + lengthBytes)
  return header
}

/**
 * Writes binary frames straight to the WebSocket's socket: a frame header and then the caller's chunks,
 * uncopied, in one corked batch (one writev on TCP, one TLS write). `ws.send()` takes one Buffer, so a
 * batch of mux frames (a 12-byte header before each payload) had to be concatenated into a fresh
 * message first; profiles of the agent sending one stream showed that copy and its garbage as its
 * largest cost after the syscalls.
 *
 * Falls back to `ws.send()` of the concatenated chunks whenever `ws` itself may have frames queued
 * (its sender is busy) or the socket is not open, so frames never overtake each other and writes after
 * close fail as `ws.send()` fails them. Returns undefined when `ws` is not the shape this was written
 * against (another `ws` major) or an extension (permessage-deflate) was negotiated: use `ws.send()` then.
 */
export function createBinaryFrameWriter (ws: WebSocket): BinaryFrameWriter | undefined {
  if (!hasInternals(ws) || ws.extensions !== '') return undefined
  const internals = ws as unknown as WsInternals
  const masked = !internals._isServer
  return (chunks, bytes, callback) => {
    const sender = internals._sender
    if (ws.readyState !== ws.OPEN || sender._state !== SENDER_IDLE || sender._queue.length > 0) {
      ws.send(chunks.length === 1 ? chunks[0] ?? Buffer.alloc(0) : Buffer.concat(chunks, bytes), { binary: true }, callback)
      return
    }
    const socket = internals._socket
    socket.cork()
    socket.write(encodeBinaryFrameHeader(bytes, masked))
    const last = chunks.length - 1
    for (let i = 0; i < last; i++) socket.write(chunks[i] as Buffer)
    socket.write(chunks[last] ?? Buffer.alloc(0), callback)
    socket.uncork()
  }
}
