import type { WebSocket } from 'ws'

/**
 * The part of `ws`'s `Receiver` (lib/receiver.js, ws 8.x) that {@link streamBinaryPayloads} reads and
 * writes: its parser state between frames. Private to `ws`, so the shape is checked before use.
 */
interface WsReceiverState {
  getData: (cb: (err?: Error) => void) => void
  consume: (n: number) => Buffer
  emit: (event: 'message', data: Buffer, isBinary: boolean) => boolean
  _buffers: Buffer[]
  _bufferedBytes: number
  _payloadLength: number
  _opcode: number
  _fin: boolean
  _compressed: boolean
  _masked: boolean
  _mask: Buffer | undefined
  _fragmented: number
  _totalPayloadLength: number
  _messageLength: number
  _numFragments: number
  _maxFragments: number
  _fragments: Buffer[]
  _allowSynchronousEvents: boolean
  _binaryType: string
  _loop: boolean
  _state: number
}

// ws's receiver states (lib/receiver.js).
const GET_INFO = 0
const OPCODE_BINARY = 2
const NUMBER_FIELDS = ['_bufferedBytes', '_payloadLength', '_opcode', '_fragmented', '_totalPayloadLength', '_messageLength', '_numFragments', '_maxFragments', '_state'] as const
const BOOLEAN_FIELDS = ['_fin', '_compressed', '_masked', '_allowSynchronousEvents', '_loop'] as const

/** Bytes of the current frame already handed on, per receiver: the mask's phase for the next piece. */
const frameOffsets = new WeakMap<object, number>()

function isReceiverState (value: unknown): value is WsReceiverState {
  if (typeof value !== 'object' || value === null) return false
  const r = value as Record<string, unknown>
  return typeof r.getData === 'function' && typeof r.consume === 'function' && typeof r.emit === 'function' &&
    Array.isArray(r._buffers) && Array.isArray(r._fragments) &&
    NUMBER_FIELDS.every((name) => typeof r[name] === 'number') && BOOLEAN_FIELDS.every((name) => typeof r[name] === 'boolean')
}

/** XORs `piece`, which starts `offset` bytes into its frame's payload, with the frame's 4-byte mask. */
function unmaskAt (piece: Buffer, mask: Buffer, offset: number): void {
  const m0 = mask[offset & 3] ?? 0
  const m1 = mask[(offset + 1) & 3] ?? 0
  const m2 = mask[(offset + 2) & 3] ?? 0
  const m3 = mask[(offset + 3) & 3] ?? 0
  if ((m0 | m1 | m2 | m3) === 0) return
  const length = piece.length
  let i = 0
  for (; i + 3 < length; i += 4) {
    piece[i] = (piece[i] ?? 0) ^ m0
    piece[i + 1] = (piece[i + 1] ?? 0) ^ m1
    piece[i + 2] = (piece[i + 2] ?? 0) ^ m2
    piece[i + 3] = (piece[i + 3] ?? 0) ^ m3
  }
  const rest = [m0, m1, m2]
  for (let k = 0; i < length; i++, k++) piece[i] = (piece[i] ?? 0) ^ (rest[k] ?? 0)
}

/**
 * Makes `ws` hand each binary frame's payload on as it arrives, one `'message'` per received piece
 * (a view into the socket's chunk, never a copy), instead of buffering the frame and then the message
 * and copying both into one Buffer. For a byte stream such as the mux, message boundaries mean nothing,
 * and profiles of the exit-node receiving one wss stream showed ~18 % of its CPU in that copy (a 1 MiB
 * message spans 64 TLS records) and most of its GC in the copies' allocations.
 *
 * Only the payload step of uncompressed binary frames changes; `ws` still parses every header and
 * enforces what it enforced: RSV bits, opcodes, fragmentation order, MASK set (server) or clear
 * (client), `maxPayload` over the whole message (checked on each frame's header, before its payload),
 * control frames (ping/pong/close interleaved with fragments), close codes, text frames (reassembled
 * and UTF-8-checked as before). A binary message therefore reaches `'message'` listeners as one or more
 * pieces whose concatenation is the message; an empty binary message stays one empty `'message'`.
 *
 * Call it before the socket delivers data: on the server in the `handleUpgrade` callback, on the client
 * in `'open'` (both run before the first socket read). Returns false, changing nothing, when the
 * receiver is not the shape this was written against (another `ws` major), when events are deferred
 * (`allowSynchronousEvents: false`) or `binaryType` is not `nodebuffer`, or when it is not between two
 * messages (data already read).
 *
 * With `onPiece` the pieces go to it instead of `'message'` (skipping ws's two event emits per piece);
 * text messages, empty binary messages and frames `ws` handles itself still arrive as `'message'`.
 */
export function streamBinaryPayloads (ws: WebSocket, onPiece?: (piece: Buffer) => void): boolean {
  const receiver: unknown = (ws as unknown as { _receiver?: unknown })._receiver
  if (!isReceiverState(receiver)) return false
  if (!receiver._allowSynchronousEvents || receiver._binaryType !== 'nodebuffer') return false
  // Only between messages: fragments ws already holds would be lost when the message ends here.
  if (receiver._bufferedBytes !== 0 || receiver._state !== GET_INFO || receiver._fragmented !== 0 || receiver._fragments.length > 0) return false
  const wholeFrame = receiver.getData
  frameOffsets.set(receiver, 0)
  receiver.getData = function streamingGetData (this: WsReceiverState, cb: (err?: Error) => void): void {
    if (this._opcode !== OPCODE_BINARY || this._compressed || this._payloadLength === 0 || this._binaryType !== 'nodebuffer') {
      wholeFrame.call(this, cb)
      return
    }
    let offset = frameOffsets.get(this) ?? 0
    if (offset === 0 && this._maxFragments > 0 && this._numFragments >= this._maxFragments) {
      // ws's own check and error for a message of too many fragments.
      wholeFrame.call(this, cb)
      return
    }
    if (offset === 0) this._numFragments++
    const mask = this._masked ? this._mask : undefined
    while (this._payloadLength > 0 && this._bufferedBytes > 0) {
      const first = this._buffers[0]
      if (first === undefined) break
      const n = Math.min(this._payloadLength, first.length)
      const piece = this.consume(n)
      if (mask !== undefined) unmaskAt(piece, mask, offset)
      offset += n
      this._payloadLength -= n
      if (onPiece !== undefined) onPiece(piece)
      else this.emit('message', piece, true)
    }
    if (this._payloadLength > 0) {
      frameOffsets.set(this, offset)
      this._loop = false
      return
    }
    frameOffsets.set(this, 0)
    this._mask = undefined
    if (this._fin) {
      this._totalPayloadLength = 0
      this._messageLength = 0
      this._fragmented = 0
      this._numFragments = 0
      if (this._fragments.length > 0) this._fragments = []
    }
    this._state = GET_INFO
  }
  return true
}
