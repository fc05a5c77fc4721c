import { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { MuxError } from './errors.js'
import { createBinaryFrameWriter } from './ws-frame-writer.js'
import type { BinaryFrameWriter } from './ws-frame-writer.js'
import { streamBinaryPayloads } from './ws-streaming-receiver.js'
import { releaseWritten } from './read-buffer-pool.js'

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
   * costs a frame header and a wakeup on the peer); a single larger chunk goes alone. Nothing is copied
   * either way: the chunks are written after the message's header.
   * Keeps every message below the peer's `maxPayload` (4 MiB on the exit-node and agent) whatever the
   * batch size; 64 KiB to 1 MiB measured within noise of each other here, larger slightly ahead.
   * @default 1048576
   */
  maxMessageBytes?: number
  /**
   * Report every written chunk to {@link releaseWritten} once its write completed, so buffers a
   * `ReadBufferPool` socket read into can be read into again. Only the agent reads into a pool; off
   * elsewhere, since an A/B of the exit-node with it on (nothing to release there) measured more
   * mark-compacts over wss uploads, for no reason found.
   * @default false
   */
  releaseWrittenChunks?: boolean
}

/** Defaults of {@link WebSocketDuplexOptions}. */
export const WEBSOCKET_DUPLEX_DEFAULTS = Object.freeze({ maxBufferedBytes: 1024 * 1024, maxMessageBytes: 1024 * 1024, releaseWrittenChunks: false } as const satisfies Required<WebSocketDuplexOptions>)

const noop = (): void => {}
const HEADER_MAX_BYTES = 64

/** Consecutive chunks that go out as one WebSocket message. */
export interface FrameGroup {
  chunks: Buffer[]
  bytes: number
}

/** Groups consecutive chunks into messages of up to `maxBytes` each; a chunk above it is a message of its own. */
export function groupIntoFrames (chunks: readonly Buffer[], maxBytes: number): FrameGroup[] {
  const groups: FrameGroup[] = []
  let group: FrameGroup = { chunks: [], bytes: 0 }
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i] as Buffer
    // A frame header (12 bytes) decides together with the payload after it, so the two share a message.
    const unit = chunk.length <= HEADER_MAX_BYTES ? chunk.length + (chunks[i + 1]?.length ?? 0) : chunk.length
    if (group.bytes > HEADER_MAX_BYTES && group.bytes + unit > maxBytes) {
      groups.push(group)
      group = { chunks: [], bytes: 0 }
    }
    group.chunks.push(chunk)
    group.bytes += chunk.length
  }
  if (group.chunks.length > 0) groups.push(group)
  return groups
}

/** Consumers registered with {@link takeChunks}, per duplex made by {@link createWebSocketDuplex}. */
const chunkTakers = new WeakMap<Duplex, (onChunk: (chunk: Buffer) => void) => void>()

/**
 * Hands each received piece of a {@link createWebSocketDuplex} duplex straight to `onChunk`, in order
 * with its `'data'` events, instead of through the duplex's read buffer and `'data'`: for a consumer
 * that never pauses its transport (the mux session: flow control is per stream). Profiles of the
 * exit-node receiving one stream showed the Readable machinery (push, addChunk, emit, maybeReadMore)
 * per piece among its largest JS costs. A piece still goes through the buffer while the duplex is not
 * flowing or holds earlier data, so nothing overtakes; keep a `'data'` listener for those (and for `'end'`).
 * Returns false, changing nothing, for any other stream.
 */
export function takeChunks (duplex: Duplex, onChunk: (chunk: Buffer) => void): boolean {
  const take = chunkTakers.get(duplex)
  if (take === undefined) return false
  take(onChunk)
  return true
}

// RFC 6455 close codes.
const CLOSE_NORMAL = 1000
const CLOSE_UNSUPPORTED_DATA = 1003

/**
 * Wraps a `ws` WebSocket as a byte `Duplex` carrying binary messages (after websockets/ws `createWebSocketStream`):
 * each write batch goes out as one binary message (its chunks written uncopied after one frame header,
 * {@link createBinaryFrameWriter}), each received piece of a binary message is pushed as a chunk as it
 * arrives ({@link streamBinaryPayloads}: message boundaries mean nothing to a byte stream; the pieces
 * reach this duplex, not the WebSocket's `'message'` listeners), or handed to a consumer registered
 * with {@link takeChunks}, and a full read buffer pauses the socket. With `releaseWrittenChunks`, a written chunk
 * cut from a `ReadBufferPool` buffer is handed back to its pool ({@link releaseWritten}) once its write completed. Frames from a client carry the all-zero mask ({@link generateZeroMask}).
 * A text message destroys the duplex with `SLK_ERR_MUX_TRANSPORT_MESSAGE`. Ending the duplex closes the WebSocket with 1000; destroying it
 * terminates the WebSocket. Call it synchronously when the WebSocket is created or accepted: messages
 * that arrive before it is attached are lost.
 * @throws MuxError `SLK_ERR_MUX_INVALID_OPTION` for a bad `maxBufferedBytes`.
 */
export function createWebSocketDuplex (ws: WebSocket, options: WebSocketDuplexOptions = {}): Duplex {
  const { maxBufferedBytes, maxMessageBytes, releaseWrittenChunks } = { ...WEBSOCKET_DUPLEX_DEFAULTS, ...options }
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

  let chunkTaker: ((chunk: Buffer) => void) | undefined
  const onBinary = (chunk: Buffer): void => {
    if (duplex.destroyed) return
    if (chunkTaker !== undefined && duplex.readableFlowing === true && duplex.readableLength === 0) chunkTaker(chunk)
    else if (!duplex.push(chunk)) ws.pause()
  }

  // Set up on open: ws has no socket before. Undefined when ws is not the shape they were written against.
  let writeFrame: BinaryFrameWriter | undefined
  const attachFastPaths = (): void => {
    streamBinaryPayloads(ws, onBinary)
    writeFrame = createBinaryFrameWriter(ws)
  }
  if (!whenOpen(attachFastPaths)) attachFastPaths()

  const send = (group: FrameGroup, done: (err?: Error | null) => void): void => {
    if (whenOpen(() => { send(group, done) })) return
    // Only once the socket took them may read buffers that carried these bytes be read into again.
    const callback = !releaseWrittenChunks
      ? done
      : (err?: Error | null): void => {
          if (err == null) for (const chunk of group.chunks) releaseWritten(chunk)
          done(err)
        }
    if (writeFrame !== undefined) {
      writeFrame(group.chunks, group.bytes, callback)
      return
    }
    const [only] = group.chunks
    ws.send(group.chunks.length === 1 && only !== undefined ? only : Buffer.concat(group.chunks, group.bytes), { binary: true }, callback)
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
      send({ chunks: [chunk], bytes: chunk.length }, callback)
    },
    // Every WebSocket message costs a frame header and a wakeup on the peer, so a batch goes out as one
    // message, its chunks written uncopied after one header, but in messages of at most maxMessageBytes:
    // the peer refuses one above its maxPayload.
    writev (chunks, callback) {
      const groups = groupIntoFrames(chunks.map((c) => c.chunk as Buffer), maxMessageBytes)
      const last = groups.length - 1
      groups.forEach((group, i) => { send(group, i === last ? callback : noop) })
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
    onBinary(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data))
  })
  ws.once('error', (err: Error) => {
    duplex.destroy(err)
  })
  ws.once('close', () => {
    if (!duplex.destroyed) duplex.push(null)
  })
  chunkTakers.set(duplex, (onChunk) => { chunkTaker = onChunk })
  duplex.on('end', () => {
    if (!duplex.destroyed && duplex.writableFinished) duplex.destroy()
  })
  duplex.on('finish', () => {
    if (!duplex.destroyed && duplex.readableEnded) duplex.destroy()
  })
  return duplex
}
