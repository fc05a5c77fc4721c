import { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { MuxError } from './errors.js'

/** Options of {@link createWebSocketDuplex}. */
export interface WebSocketDuplexOptions {
  /**
   * High-water mark of each direction: received bytes buffered before the WebSocket is paused, and
   * queued bytes before `write()` returns false.
   * @default 1048576
   */
  maxBufferedBytes?: number
  /**
   * Largest WebSocket message built from a write batch. Small frames are merged up to it (each message
   * costs a frame header, a mask and a wakeup on the peer); a single larger chunk goes alone, uncopied.
   * Keeps every message below the peer's `maxPayload` (4 MiB on the exit-node and agent) whatever the
   * batch size; 64 KiB to 1 MiB measured within noise of each other here, larger slightly ahead.
   * @default 1048576
   */
  maxMessageBytes?: number
}

/** Defaults of {@link WebSocketDuplexOptions}. */
export const WEBSOCKET_DUPLEX_DEFAULTS = Object.freeze({ maxBufferedBytes: 1024 * 1024, maxMessageBytes: 1024 * 1024 } as const satisfies Required<WebSocketDuplexOptions>)

const noop = (): void => {}
const HEADER_MAX_BYTES = 64

/** Concatenates consecutive chunks up to `maxBytes` per message; a chunk above it is its own message. */
export function groupIntoMessages (chunks: Buffer[], maxBytes: number): Buffer[] {
  const messages: Buffer[] = []
  let group: Buffer[] = []
  let size = 0
  const flush = (): void => {
    const [only] = group
    if (group.length === 1 && only !== undefined) messages.push(only)
    else if (group.length > 1) messages.push(Buffer.concat(group, size))
    group = []
    size = 0
  }
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i] as Buffer
    // A frame header (12 bytes) decides together with the payload after it, so the two share a message.
    const unit = chunk.length <= HEADER_MAX_BYTES ? chunk.length + (chunks[i + 1]?.length ?? 0) : chunk.length
    if (size > HEADER_MAX_BYTES && size + unit > maxBytes) flush()
    group.push(chunk)
    size += chunk.length
  }
  flush()
  return messages
}

// RFC 6455 close codes.
const CLOSE_NORMAL = 1000
const CLOSE_UNSUPPORTED_DATA = 1003

/**
 * Wraps a `ws` WebSocket as a byte `Duplex` carrying binary messages (after websockets/ws `createWebSocketStream`):
 * each write batch goes out as one binary message, each received binary message is pushed as a chunk,
 * and a full read buffer pauses the socket. A text message destroys the duplex with
 * `SLK_ERR_MUX_TRANSPORT_MESSAGE`. Ending the duplex closes the WebSocket with 1000; destroying it
 * terminates the WebSocket. Call it synchronously when the WebSocket is created or accepted: messages
 * that arrive before it is attached are lost.
 * @throws MuxError `SLK_ERR_MUX_INVALID_OPTION` for a bad `maxBufferedBytes`.
 */
export function createWebSocketDuplex (ws: WebSocket, options: WebSocketDuplexOptions = {}): Duplex {
  const { maxBufferedBytes, maxMessageBytes } = { ...WEBSOCKET_DUPLEX_DEFAULTS, ...options }
  for (const [name, value] of [['maxBufferedBytes', maxBufferedBytes], ['maxMessageBytes', maxMessageBytes]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new MuxError('SLK_ERR_MUX_INVALID_OPTION', `ws duplex option ${name}: expected a positive integer, got ${String(value)}`)
    }
  }
  ws.binaryType = 'nodebuffer'

  const whenOpen = (fn: () => void): boolean => {
    if (ws.readyState !== ws.CONNECTING) return false
    ws.once('open', fn)
    return true
  }

  const send = (chunk: Buffer, callback: (err?: Error | null) => void): void => {
    if (whenOpen(() => { send(chunk, callback) })) return
    ws.send(chunk, { binary: true }, callback)
  }

  const duplex = new Duplex({
    autoDestroy: false,
    emitClose: false,
    allowHalfOpen: true,
    readableHighWaterMark: maxBufferedBytes,
    writableHighWaterMark: maxBufferedBytes,
    read () {
      if (ws.isPaused && ws.readyState === ws.OPEN) ws.resume()
    },
    write (chunk: Buffer, _encoding, callback) {
      send(chunk, callback)
    },
    // Every WebSocket message costs a frame header, a mask on the client and a wakeup on the peer, so a
    // batch is merged, but into messages of at most maxMessageBytes: the peer reassembles (copies) a
    // message that spans many TCP reads, and refuses one above its maxPayload.
    writev (chunks, callback) {
      const messages = groupIntoMessages(chunks.map((c) => c.chunk as Buffer), maxMessageBytes)
      const last = messages.length - 1
      messages.forEach((message, i) => { send(message, i === last ? callback : noop) })
    },
    final (callback) {
      if (whenOpen(() => { duplex._final(callback) })) return
      if (ws.readyState === ws.OPEN) ws.close(CLOSE_NORMAL)
      callback()
    },
    destroy (err, callback) {
      if (ws.readyState === ws.CLOSED) {
        callback(err)
        process.nextTick(() => duplex.emit('close'))
        return
      }
      ws.once('close', () => {
        callback(err)
        process.nextTick(() => duplex.emit('close'))
      })
      ws.terminate()
    },
  })

  ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    if (duplex.destroyed) return
    if (!isBinary) {
      ws.close(CLOSE_UNSUPPORTED_DATA, 'binary messages only')
      duplex.destroy(new MuxError('SLK_ERR_MUX_TRANSPORT_MESSAGE', 'peer sent a text WebSocket message; the mux carries binary messages only'))
      return
    }
    const chunk = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
    if (!duplex.push(chunk)) ws.pause()
  })
  ws.once('error', (err: Error) => {
    duplex.destroy(err)
  })
  ws.once('close', () => {
    if (!duplex.destroyed) duplex.push(null)
  })
  duplex.on('end', () => {
    if (!duplex.destroyed && duplex.writableFinished) duplex.destroy()
  })
  duplex.on('finish', () => {
    if (!duplex.destroyed && duplex.readableEnded) duplex.destroy()
  })
  return duplex
}
