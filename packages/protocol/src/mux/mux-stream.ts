import { Duplex } from 'node:stream'
import type { Writable } from 'node:stream'
import { MuxError } from '../errors.js'
import type { CancelTimer, MuxClock } from './clock.js'
import { FLAG, FRAME_TYPE, INITIAL_STREAM_WINDOW_BYTES } from './frame.js'
import type { ResolvedMuxSessionOptions } from './options.js'
import type { FrameSink } from './outbound-queue.js'

/** The session options a stream reads. */
export type StreamOptions = Pick<ResolvedMuxSessionOptions, 'initialStreamWindowBytes' | 'maxStreamWindowBytes' | 'windowAutoTuning' | 'maxDataFrameBytes' | 'ackDelayMs'>

/** Session-wide counters its streams keep up to date. */
export interface StreamCounters {
  /** Bytes received on all streams and not yet read by the application. */
  bufferedBytes: number
  /** Times a writer had to wait for window credit. */
  windowStalls: number
}

/**
 * What a stream needs from its session, as libp2p-yamux's stream gets `sendFrame`/`getRTT`: the
 * outbound queue, the RTT for window auto-tuning, and the session's window budget.
 */
export interface StreamSession {
  readonly options: StreamOptions
  readonly outbound: FrameSink
  readonly counters: StreamCounters
  /** The session's clock, for the delayed ACK. */
  readonly clock: MuxClock
  /** The last measured round-trip time, if any. */
  getRtt: () => number | undefined
  /** Takes up to `bytes` of the session's window budget (`maxSessionWindowBytes`); returns how many were granted. */
  reserveWindow: (bytes: number) => number
  /** The stream is done on the wire (both FIN, or RST either way): forget it and take back its window above the initial one. */
  streamEnded: (stream: MuxStream) => void
}

type WriteCallback = (error?: Error | null) => void

/** Node's pool slab (`Buffer.poolSize`): slices of it are shared by design and never worth copying. */
const POOL_SLAB_BYTES = 8 * 1024
/**
 * Credit goes back once this part of the window was read: a quarter, as quic-go does (its
 * `WindowUpdateThreshold`); hashicorp waits for half. The sender may have the window minus what is
 * read and not yet credited on the way, so with half it could keep only half to three quarters of
 * the window in flight on a long link (measured: 0.72× raw TCP on the 500 ms scale model of the
 * bench's link, 0.82× with a quarter). A credit is a 12-byte frame: at a 16 MiB window, 256 per GiB.
 */
const CREDIT_PARTS = 4

/**
 * A piece about to wait in a stream's buffer, copied when it is a small part of a larger chunk (a WebSocket
 * message or socket read carrying other streams' frames): kept as a slice, it would keep the whole chunk alive
 * until the application reads it, so a slow stream's window of small pieces could hold many large chunks.
 * Copied, a waiting stream holds at most twice its buffered bytes (plus pool slabs).
 */
function compactForBuffering (piece: Buffer): Buffer {
  const backing = piece.buffer.byteLength
  return backing > POOL_SLAB_BYTES && piece.length * 2 < backing ? Buffer.from(piece) : piece
}

/**
 * One yamux stream as a Node `Duplex` (bytes, `allowHalfOpen`): `end()` sends FIN, `destroy()` before both
 * sides finished sends RST, a peer's FIN ends the readable side and a peer's RST destroys the stream with
 * `SLK_ERR_MUX_STREAM_RESET`. Window credit goes back to the peer as the application reads.
 */
export class MuxStream extends Duplex {
  /** The yamux stream id (odd when the client opened it, even for the server). */
  readonly id: number
  readonly #session: StreamSession
  readonly #options: StreamOptions
  readonly #outbound: FrameSink
  #sendWindow = INITIAL_STREAM_WINDOW_BYTES
  #recvMax: number
  // What the peer may still send before it needs more credit (spec: every peer starts at 256 KiB).
  #recvAvail = INITIAL_STREAM_WINDOW_BYTES
  #received = 0
  #consumed = 0
  #epochStart = 0
  #epochConsumed = 0
  #finSent = false
  #finReceived = false
  #removed = false
  #pending: Buffer | null = null
  #pendingOffset = 0
  #pendingCb: WriteCallback | null = null
  #stalled = false
  /** Set while our ACK of the peer's SYN waits to ride with this stream's first frame. */
  #ackTimer: CancelTimer | null = null
  /** Where DATA goes instead of the Readable once {@link attachSink} was called (relay's socket). */
  #sink: Writable | null = null
  /** Pieces that arrived while the sink's write() had returned false: unread, their credit still held. */
  #sinkQueue: Array<Buffer | undefined> = []
  #sinkQueueHead = 0
  #sinkQueuedBytes = 0
  #sinkBlocked = false
  /** The peer's FIN arrived while pieces still waited for the sink: the readable side ends after them. */
  #sinkEndPending = false

  /** @internal Streams are created by `MuxSession.openStream()` or arrive in its `'stream'` event. */
  constructor (id: number, session: StreamSession) {
    super({ allowHalfOpen: true, decodeStrings: true })
    this.id = id
    this.#session = session
    this.#options = session.options
    this.#outbound = session.outbound
    this.#recvMax = session.options.initialStreamWindowBytes
  }

  /** Bytes received from the peer and not yet read by the application. */
  get bufferedBytes (): number {
    return this.#received - this.#consumed
  }

  /** The receive window currently granted to the peer for this stream (grows with auto-tuning). */
  get receiveWindowBytes (): number {
    return this.#recvMax
  }

  // --- called by the session (@internal: not for applications) --------------------------------

  /** @internal What the peer may still send on this stream before it needs more credit. */
  get receiveAvailableBytes (): number {
    return this.#recvAvail
  }

  /** @internal Opens the stream on the wire: SYN with the window we grant above 256 KiB. */
  sendSyn (): void {
    this.#sendAnnounce(FLAG.SYN)
  }

  /**
   * @internal Accepts the peer's stream: ACK with the window we grant above 256 KiB. With `ackDelayMs`
   * the ACK waits for this stream's first outgoing frame (the spec lets it ride with data), so an accept
   * answered after a dial costs the peer one message, not two; it goes alone after the delay.
   */
  sendAck (): void {
    const delayMs = this.#options.ackDelayMs
    if (delayMs > 0) {
      this.#ackTimer = this.#session.clock.setTimeout(() => { this.#sendPendingAck() }, delayMs)
      return
    }
    this.#sendAnnounce(FLAG.ACK)
  }

  /**
   * @internal `relay()`'s fast path to a socket: from now on DATA goes straight to `sink.write()` instead of
   * through this stream's Readable (`push()`, `'data'`, `read()`): a piece per `write()`, in order, after what
   * was already buffered. Window credit goes back as the sink takes the bytes; once its `write()` returns
   * false, later pieces wait here (holding their credit, so a stalled reader stops the peer at the window)
   * until its `'drain'`. The peer's FIN still ends the readable side (`'end'`, after every waiting piece), so
   * the caller passes it on as it would for a reader; errors and destroy are unchanged.
   */
  attachSink (sink: Writable): void {
    this.#sink = sink
    sink.on('drain', this.#onSinkDrain)
    // Bytes already buffered (left after the status read, or arrived with the SYN) go first; read() also
    // ends the readable side when the peer's FIN came with them.
    for (let chunk: unknown = this.read(); chunk !== null; chunk = this.read()) {
      if (!(chunk instanceof Buffer)) continue
      if (!sink.write(chunk)) this.#sinkBlocked = true
    }
  }

  /** @internal A piece of DATA payload; the session has checked it fits the window. */
  handleData (piece: Buffer): void {
    this.#recvAvail -= piece.length
    if (this.#finReceived || this.destroyed) return
    this.#received += piece.length
    this.#session.counters.bufferedBytes += piece.length
    const sink = this.#sink
    if (sink !== null) {
      if (this.#sinkBlocked) {
        this.#sinkQueue.push(compactForBuffering(piece))
        this.#sinkQueuedBytes += piece.length
        return
      }
      if (!sink.write(piece)) this.#sinkBlocked = true
      this.#afterConsume()
      return
    }
    // A flowing reader with nothing buffered gets the piece at once (no copy); anything else waits in the buffer.
    this.push(this.readableFlowing === true && this.readableLength === 0 ? piece : compactForBuffering(piece))
    // A flowing reader may have taken the chunk inside push() without a read() call.
    this.#afterConsume()
  }

  /** @internal The peer granted `delta` more bytes of send window. */
  handleWindowUpdate (delta: number): void {
    this.#sendWindow += delta
    if (delta > 0 && this.#pending !== null) this.#drainPending()
  }

  /** @internal The peer half-closed. */
  handleFin (): void {
    if (this.#finReceived) return
    this.#finReceived = true
    if (this.#sinkQueuedBytes > 0) this.#sinkEndPending = true
    else this.#endReadable()
    if (this.#finSent) this.#remove()
  }

  /** @internal The peer reset the stream. */
  handleReset (): void {
    this.#remove()
    this.destroy(new MuxError('SLK_ERR_MUX_STREAM_RESET', `peer reset stream ${this.id}`))
  }

  /** @internal The session is gone; no RST can or need be sent. `undefined` for a stream no one accepted. */
  handleSessionEnd (err: Error | undefined): void {
    this.#ackTimer?.()
    this.#ackTimer = null
    this.#removed = true
    this.destroy(err)
  }

  // --- stream internals ---------------------------------------------------------------------

  #endReadable (): void {
    this.push(null)
    // With a sink nothing reads the (empty) Readable: this read() is what emits its 'end'.
    if (this.#sink !== null) this.read()
  }

  readonly #onSinkDrain = (): void => {
    const sink = this.#sink
    if (sink === null) return
    this.#sinkBlocked = false
    const queue = this.#sinkQueue
    let head = this.#sinkQueueHead
    while (head < queue.length) {
      const piece = queue[head]
      queue[head] = undefined
      head++
      if (piece === undefined) continue
      this.#sinkQueuedBytes -= piece.length
      if (!sink.write(piece)) {
        this.#sinkBlocked = true
        break
      }
    }
    if (head >= queue.length) {
      this.#sinkQueue = []
      head = 0
    }
    this.#sinkQueueHead = head
    this.#afterConsume()
    if (this.#sinkEndPending && this.#sinkQueuedBytes === 0) {
      this.#sinkEndPending = false
      this.#endReadable()
    }
  }

  #sendAnnounce (flag: number): void {
    this.#epochStart = this.#session.clock.now()
    this.#outbound.sendFrame(FRAME_TYPE.WINDOW_UPDATE, flag, this.id, this.#recvMax - INITIAL_STREAM_WINDOW_BYTES)
    // The peer may already have sent data against the initial window.
    this.#recvAvail += this.#recvMax - INITIAL_STREAM_WINDOW_BYTES
  }

  #sendPendingAck (): void {
    if (this.#ackTimer === null) return
    this.#ackTimer()
    this.#ackTimer = null
    if (!this.#removed && !this.#outbound.closed) this.#sendAnnounce(FLAG.ACK)
  }

  // Node calls read() for every way of consuming (flowing 'data', read(), async iteration): the
  // spec returns credit as the application reads, so this is where consumption is counted.
  override read (size?: number): ReturnType<Duplex['read']> {
    const chunk: unknown = super.read(size)
    this.#afterConsume()
    return chunk
  }

  override _read (): void {
    this.#afterConsume()
  }

  #afterConsume (): void {
    const buffered = this.readableLength + this.#sinkQueuedBytes
    const consumed = this.#received - buffered
    if (consumed <= this.#consumed) return
    this.#session.counters.bufferedBytes -= consumed - this.#consumed
    this.#consumed = consumed
    if (this.#finReceived || this.#removed) return
    // hashicorp stream.go sendWindowUpdate, at a quarter of the window instead of half (CREDIT_PARTS).
    let delta = this.#recvMax - buffered - this.#recvAvail
    if (delta < this.#recvMax / CREDIT_PARTS) return
    if (this.#ackTimer !== null) {
      // The ACK carries the window above the initial one: credit only what is still owed after it.
      this.#sendPendingAck()
      delta = this.#recvMax - buffered - this.#recvAvail
      if (delta < this.#recvMax / CREDIT_PARTS) return
    }
    delta += this.#autoTune(consumed)
    this.#recvAvail += delta
    this.#outbound.sendFrame(FRAME_TYPE.WINDOW_UPDATE, 0, this.id, delta)
  }

  /**
   * Window auto-tuning, judged once per half window read (an epoch; quic-go's rule): if that half went
   * by within two round trips the window, not the reader, limits the stream and it doubles; within one
   * round trip it quadruples, since a window read that fast is far below the link's bandwidth-delay
   * product (the ramp from 256 KiB to 16 MiB takes 3 round trips instead of 6). Bounded as before by
   * `maxStreamWindowBytes` and the session's budget. Returns the bytes the window grew by.
   */
  #autoTune (consumed: number): number {
    const inEpoch = consumed - this.#epochConsumed
    if (inEpoch < this.#recvMax / 2) return 0
    const now = this.#session.clock.now()
    // How long half the window took (the epoch may have run past half).
    const halfWindowMs = (now - this.#epochStart) * (this.#recvMax / 2) / inEpoch
    this.#epochStart = now
    this.#epochConsumed = consumed
    const options = this.#options
    if (!options.windowAutoTuning || this.#recvMax >= options.maxStreamWindowBytes) return 0
    const rtt = this.#session.getRtt()
    if (rtt === undefined || halfWindowMs >= 2 * rtt) return 0
    const factor = halfWindowMs < rtt ? 4 : 2
    const grow = this.#session.reserveWindow(Math.min(this.#recvMax * (factor - 1), options.maxStreamWindowBytes - this.#recvMax))
    this.#recvMax += grow
    return grow
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#write(chunk, callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer, encoding: BufferEncoding }>, callback: WriteCallback): void {
    const first = chunks[0]
    this.#write(chunks.length === 1 && first !== undefined ? first.chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback)
  }

  #write (chunk: Buffer, callback: WriteCallback): void {
    if (this.#outbound.closed) {
      callback(new MuxError('SLK_ERR_MUX_SESSION_CLOSED', `stream ${this.id} written after its session closed`))
      return
    }
    this.#pending = chunk
    this.#pendingOffset = 0
    this.#pendingCb = callback
    this.#drainPending()
  }

  #drainPending (): void {
    const chunk = this.#pending
    if (chunk === null) return
    this.#sendPendingAck()
    const outbound = this.#outbound
    const maxFrame = this.#options.maxDataFrameBytes
    const length = chunk.length
    let offset = this.#pendingOffset
    while (offset < length) {
      const window = this.#sendWindow
      if (window <= 0) {
        this.#pendingOffset = offset
        if (!this.#stalled) {
          this.#stalled = true
          this.#session.counters.windowStalls++
        }
        return
      }
      const n = Math.min(length - offset, window, maxFrame)
      outbound.sendData(this.id, n === length ? chunk : chunk.subarray(offset, offset + n))
      this.#sendWindow = window - n
      offset += n
    }
    this.#stalled = false
    this.#pending = null
    const callback = this.#pendingCb
    this.#pendingCb = null
    if (callback === null) return
    outbound.whenWritable(callback)
  }

  override _final (callback: WriteCallback): void {
    if (!this.#finSent && !this.#removed) {
      this.#sendPendingAck()
      this.#finSent = true
      this.#outbound.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.FIN, this.id, 0)
      if (this.#finReceived) this.#remove()
    }
    callback()
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#removed) {
      if (!(this.#finSent && this.#finReceived)) {
        this.#outbound.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.RST, this.id, 0)
      }
      this.#remove()
    }
    if (this.#sink !== null) {
      this.#sink.off('drain', this.#onSinkDrain)
      this.#sink = null
      this.#sinkQueue = []
      this.#sinkQueueHead = 0
      this.#sinkQueuedBytes = 0
    }
    const unread = this.#received - this.#consumed
    if (unread > 0) {
      this.#session.counters.bufferedBytes -= unread
      this.#consumed = this.#received
    }
    const pendingCb = this.#pendingCb
    if (pendingCb !== null) {
      this.#pending = null
      this.#pendingCb = null
      pendingCb(error ?? new MuxError('SLK_ERR_MUX_STREAM_RESET', `stream ${this.id} was destroyed before its write completed`))
    }
    callback(error)
  }

  #remove (): void {
    if (this.#removed) return
    this.#removed = true
    // A reset needs no ACK before it.
    this.#ackTimer?.()
    this.#ackTimer = null
    this.#session.streamEnded(this)
  }
}
