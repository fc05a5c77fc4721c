import { MuxError } from '../errors.js'
import { FRAME_TYPE, HEADER_BYTES, MAX_UINT32, YAMUX_VERSION, frameTypeName } from './frame.js'
import type { FrameHeader, FrameType } from './frame.js'

/**
 * Receives what a {@link FrameParser} decodes. The `header` object is reused for every frame: copy its
 * fields if they are needed after the callback returns. Throwing (a `MuxError`) fails the parser.
 */
export interface FrameHandler {
  /** A complete header; for DATA it comes before any of its payload, so the length can be checked first. */
  onHeader: (header: FrameHeader) => void
  /** A piece of the current DATA frame's payload: a view into the pushed chunk, never a copy. */
  onPayload: (header: FrameHeader, piece: Buffer) => void
  /** The current DATA frame is complete (also called for a zero-length DATA frame). */
  onDataEnd: (header: FrameHeader) => void
}

/** Options of {@link FrameParser}. */
export interface FrameParserOptions {
  /**
   * Largest DATA length accepted at all, checked before the handler sees the header.
   * @default 4294967295
   */
  maxDataBytes?: number
}

const STATE_HEADER = 0
const STATE_PAYLOAD = 1
const STATE_STOPPED = 2
const STATE_FAILED = 3

/**
 * A pure, iterative yamux frame decoder: feed it transport chunks of any size and split, and it calls the
 * handler per frame. It never allocates per frame (one 12-byte scratch buffer for headers split across
 * chunks) and never recurses, so any number of frames in one chunk uses constant stack.
 */
export class FrameParser {
  readonly #handler: FrameHandler
  readonly #maxDataBytes: number
  readonly #partial = Buffer.alloc(HEADER_BYTES)
  #partialBytes = 0
  #state = STATE_HEADER
  #payloadRemaining = 0
  readonly #header: FrameHeader = { type: FRAME_TYPE.DATA, flags: 0, streamId: 0, length: 0 }

  constructor (handler: FrameHandler, options: FrameParserOptions = {}) {
    this.#handler = handler
    this.#maxDataBytes = options.maxDataBytes ?? MAX_UINT32
  }

  /** Whether a frame is partly received (a transport ending now cut it). */
  get midFrame (): boolean {
    return this.#partialBytes > 0 || this.#state === STATE_PAYLOAD
  }

  /** Stops decoding: the rest of the current chunk and every later chunk are ignored. */
  stop (): void {
    if (this.#state !== STATE_FAILED) this.#state = STATE_STOPPED
  }

  /**
   * Decodes as much of `chunk` as forms frames, keeping a split header or payload for the next chunk.
   * @throws MuxError `SLK_ERR_MUX_VERSION`, `SLK_ERR_MUX_FRAME_TYPE`, `SLK_ERR_MUX_FRAME_TOO_LARGE`, or whatever the handler throws.
   */
  push (chunk: Buffer): void {
    if (this.#state === STATE_FAILED) throw new MuxError('SLK_ERR_MUX_PROTOCOL', 'frame parser used after it failed', { closeReason: 'protocol-error' })
    try {
      this.#push(chunk)
    } catch (err) {
      this.#state = STATE_FAILED
      throw err
    }
  }

  #push (chunk: Buffer): void {
    const length = chunk.length
    const handler = this.#handler
    const header = this.#header
    let offset = 0
    while (offset < length) {
      const state = this.#state
      if (state === STATE_STOPPED) return
      if (state === STATE_PAYLOAD) {
        const n = Math.min(this.#payloadRemaining, length - offset)
        const piece = chunk.subarray(offset, offset + n)
        offset += n
        this.#payloadRemaining -= n
        if (this.#payloadRemaining === 0) this.#state = STATE_HEADER
        handler.onPayload(header, piece)
        if (this.#payloadRemaining === 0 && this.#state === STATE_HEADER) handler.onDataEnd(header)
        continue
      }
      if (this.#partialBytes === 0 && length - offset >= HEADER_BYTES) {
        this.#decode(chunk, offset)
        offset += HEADER_BYTES
      } else {
        const n = Math.min(HEADER_BYTES - this.#partialBytes, length - offset)
        chunk.copy(this.#partial, this.#partialBytes, offset, offset + n)
        this.#partialBytes += n
        offset += n
        if (this.#partialBytes < HEADER_BYTES) return
        this.#partialBytes = 0
        this.#decode(this.#partial, 0)
      }
      if (header.type === FRAME_TYPE.DATA) {
        handler.onHeader(header)
        if (this.#state !== STATE_HEADER) continue // stopped by the handler
        if (header.length === 0) handler.onDataEnd(header)
        else {
          this.#payloadRemaining = header.length
          this.#state = STATE_PAYLOAD
        }
      } else {
        handler.onHeader(header)
      }
    }
  }

  #decode (buf: Buffer, offset: number): void {
    const version = buf.readUInt8(offset)
    if (version !== YAMUX_VERSION) {
      throw new MuxError('SLK_ERR_MUX_VERSION', `peer sent a frame with yamux version ${version}; only version ${YAMUX_VERSION} exists`, { closeReason: 'protocol-error' })
    }
    const type = buf.readUInt8(offset + 1)
    if (type > FRAME_TYPE.GO_AWAY) {
      throw new MuxError('SLK_ERR_MUX_FRAME_TYPE', `peer sent a frame of unknown ${frameTypeName(type)}; yamux types are 0-3`, { closeReason: 'protocol-error' })
    }
    const header = this.#header
    header.type = type as FrameType
    header.flags = buf.readUInt16BE(offset + 2)
    header.streamId = buf.readUInt32BE(offset + 4)
    header.length = buf.readUInt32BE(offset + 8)
    if (type === FRAME_TYPE.DATA && header.length > this.#maxDataBytes) {
      throw new MuxError('SLK_ERR_MUX_FRAME_TOO_LARGE', `peer sent a DATA frame of ${header.length} bytes on stream ${header.streamId}; at most ${this.#maxDataBytes} are accepted`, { closeReason: 'protocol-error' })
    }
  }
}
