import { Duplex } from 'node:stream'
import { performance } from 'node:perf_hooks'
import { MuxError } from '../errors.js'
import { FLAG, FRAME_TYPE, INITIAL_STREAM_WINDOW_BYTES } from './frame.js'
import type { FrameType } from './frame.js'
import type { ResolvedMuxSessionOptions } from './options.js'
import type { MuxSession } from './mux-session.js'

/** Mutable counters a session shares with its streams. */
export interface MuxCounters {
  streamsOpenedTotal: number
  streamsAcceptedTotal: number
  streamsRefusedTotal: number
  bytesIn: number
  bytesOut: number
  windowStalls: number
  protocolErrors: number
  bufferedBytes: number
}

/** What a stream needs from its session; kept off the public `MuxSession` type. */
export interface StreamHost {
  readonly options: ResolvedMuxSessionOptions
  readonly counters: MuxCounters
  sendFrame: (type: FrameType, flags: number, streamId: number, length: number) => void
  sendData: (streamId: number, payload: Buffer) => void
  /** Whether the transport asked us to stop writing (write() returned false) or our queue is full. */
  writeBlocked: () => boolean
  /** Calls `cb` once the transport can take more. */
  onceWritable: (cb: () => void) => void
  /** The stream is done on the wire (both FIN, or RST either way): forget it and release its window. */
  streamClosed: (stream: MuxStream, extraWindowBytes: number) => void
  /** Takes up to `bytes` of the session window budget; returns how many were granted. */
  reserveWindow: (bytes: number) => number
  rttMs: () => number | undefined
  alive: () => boolean
}

/** @internal Session-side entry points of a stream. */
export const kOnData = Symbol('mux.onData')
/** @internal */
export const kOnWindowUpdate = Symbol('mux.onWindowUpdate')
/** @internal */
export const kOnFin = Symbol('mux.onFin')
/** @internal */
export const kOnReset = Symbol('mux.onReset')
/** @internal */
export const kAbort = Symbol('mux.abort')
/** @internal */
export const kAnnounce = Symbol('mux.announce')
/** @internal */
export const kRecvAvailable = Symbol('mux.recvAvailable')

type WriteCallback = (error?: Error | null) => void

/**
 * One yamux stream as a Node `Duplex` (bytes, `allowHalfOpen`): `end()` sends FIN, `destroy()` before both
 * sides finished sends RST, a peer's FIN ends the readable side and a peer's RST destroys the stream with
 * `SLK_ERR_MUX_STREAM_RESET`. Window credit goes back to the peer as the application reads.
 */
export class MuxStream extends Duplex {
  /** The yamux stream id (odd when the client opened it, even for the server). */
  readonly id: number
  /** The session carrying this stream. */
  readonly session: MuxSession
  readonly #host: StreamHost
  #sendWindow = INITIAL_STREAM_WINDOW_BYTES
  #recvMax: number
  // What the peer may still send before it needs more credit (spec: every peer starts at 256 KiB).
  #recvAvail = INITIAL_STREAM_WINDOW_BYTES
  #received = 0
  #consumed = 0
  #epochStart = 0
  #finSent = false
  #finReceived = false
  #removed = false
  #pending: Buffer | null = null
  #pendingOffset = 0
  #pendingCb: WriteCallback | null = null
  #stalled = false
  /** Set while our ACK of the peer's SYN waits to ride with this stream's first frame. */
  #ackTimer: NodeJS.Timeout | null = null

  /** @internal Streams are created by `MuxSession.openStream()` or arrive in its `'stream'` event. */
  constructor (id: number, session: MuxSession, host: StreamHost) {
    super({ allowHalfOpen: true, decodeStrings: true })
    this.id = id
    this.session = session
    this.#host = host
    this.#recvMax = host.options.initialStreamWindowBytes
  }

  /** Bytes received from the peer and not yet read by the application. */
  get bufferedBytes (): number {
    return this.#received - this.#consumed
  }

  /** The receive window currently granted to the peer for this stream (grows with auto-tuning). */
  get receiveWindowBytes (): number {
    return this.#recvMax
  }

  /** @internal */
  get [kRecvAvailable] (): number {
    return this.#recvAvail
  }

  /**
   * @internal Sends the SYN (opening) or ACK (accepting) with the window we grant above 256 KiB. With
   * `ackDelayMs` the ACK waits for this stream's first outgoing frame (the spec lets it ride with data),
   * so an accept answered after a dial costs the peer one message, not two; it goes alone after the delay.
   */
  [kAnnounce] (flag: number): void {
    const delayMs = this.#host.options.ackDelayMs
    if (flag === FLAG.ACK && delayMs > 0) {
      this.#ackTimer = setTimeout(() => { this.#sendPendingAck() }, delayMs).unref()
      return
    }
    this.#sendAnnounce(flag)
  }

  #sendAnnounce (flag: number): void {
    this.#epochStart = performance.now()
    this.#host.sendFrame(FRAME_TYPE.WINDOW_UPDATE, flag, this.id, this.#recvMax - INITIAL_STREAM_WINDOW_BYTES)
    // The peer may already have sent data against the initial window.
    this.#recvAvail += this.#recvMax - INITIAL_STREAM_WINDOW_BYTES
  }

  #sendPendingAck (): void {
    if (this.#ackTimer === null) return
    clearTimeout(this.#ackTimer)
    this.#ackTimer = null
    if (!this.#removed && this.#host.alive()) this.#sendAnnounce(FLAG.ACK)
  }

  /** @internal A piece of DATA payload; the session has checked it fits the window. */
  [kOnData] (piece: Buffer): void {
    this.#recvAvail -= piece.length
    if (this.#finReceived || this.destroyed) return
    this.#received += piece.length
    this.#host.counters.bufferedBytes += piece.length
    this.push(piece)
    // A flowing reader may have taken the chunk inside push() without a read() call.
    this.#afterConsume()
  }

  /** @internal */
  [kOnWindowUpdate] (delta: number): void {
    this.#sendWindow += delta
    if (delta > 0 && this.#pending !== null) this.#drainPending()
  }

  /** @internal The peer half-closed. */
  [kOnFin] (): void {
    if (this.#finReceived) return
    this.#finReceived = true
    this.push(null)
    if (this.#finSent) this.#remove()
  }

  /** @internal The peer reset the stream. */
  [kOnReset] (): void {
    this.#remove()
    this.destroy(new MuxError('SLK_ERR_MUX_STREAM_RESET', `peer reset stream ${this.id}`))
  }

  /** @internal The session is gone; no RST can or need be sent. `undefined` for a stream no one accepted. */
  [kAbort] (err: Error | undefined): void {
    if (this.#ackTimer !== null) clearTimeout(this.#ackTimer)
    this.#ackTimer = null
    this.#removed = true
    this.destroy(err)
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
    const buffered = this.readableLength
    const consumed = this.#received - buffered
    if (consumed <= this.#consumed) return
    this.#host.counters.bufferedBytes -= consumed - this.#consumed
    this.#consumed = consumed
    if (this.#finReceived || this.#removed) return
    // hashicorp stream.go sendWindowUpdate: credit once at least half the window was consumed.
    let delta = this.#recvMax - buffered - this.#recvAvail
    if (delta < this.#recvMax / 2) return
    if (this.#ackTimer !== null) {
      // The ACK carries the window above the initial one: credit only what is still owed after it.
      this.#sendPendingAck()
      delta = this.#recvMax - buffered - this.#recvAvail
      if (delta < this.#recvMax / 2) return
    }
    const host = this.#host
    const now = performance.now()
    const options = host.options
    if (options.windowAutoTuning && this.#recvMax < options.maxStreamWindowBytes) {
      const rtt = host.rttMs()
      // Half the window went by within two round trips: the window, not the reader, limits the stream.
      if (rtt !== undefined && now - this.#epochStart < 2 * rtt) {
        const grow = host.reserveWindow(Math.min(this.#recvMax, options.maxStreamWindowBytes - this.#recvMax))
        if (grow > 0) {
          this.#recvMax += grow
          delta += grow
        }
      }
    }
    this.#epochStart = now
    this.#recvAvail += delta
    host.sendFrame(FRAME_TYPE.WINDOW_UPDATE, 0, this.id, delta)
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#write(chunk, callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer, encoding: BufferEncoding }>, callback: WriteCallback): void {
    const first = chunks[0]
    this.#write(chunks.length === 1 && first !== undefined ? first.chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback)
  }

  #write (chunk: Buffer, callback: WriteCallback): void {
    if (!this.#host.alive()) {
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
    const host = this.#host
    const maxFrame = host.options.maxDataFrameBytes
    const length = chunk.length
    let offset = this.#pendingOffset
    while (offset < length) {
      const window = this.#sendWindow
      if (window <= 0) {
        this.#pendingOffset = offset
        if (!this.#stalled) {
          this.#stalled = true
          host.counters.windowStalls++
        }
        return
      }
      const n = Math.min(length - offset, window, maxFrame)
      host.sendData(this.id, n === length ? chunk : chunk.subarray(offset, offset + n))
      this.#sendWindow = window - n
      offset += n
    }
    this.#stalled = false
    this.#pending = null
    const callback = this.#pendingCb
    this.#pendingCb = null
    if (callback === null) return
    if (host.writeBlocked()) host.onceWritable(callback)
    else callback()
  }

  override _final (callback: WriteCallback): void {
    if (!this.#finSent && !this.#removed) {
      this.#sendPendingAck()
      this.#finSent = true
      this.#host.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.FIN, this.id, 0)
      if (this.#finReceived) this.#remove()
    }
    callback()
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#removed) {
      if (!(this.#finSent && this.#finReceived) && this.#host.alive()) {
        this.#host.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.RST, this.id, 0)
      }
      this.#remove()
    }
    const unread = this.#received - this.#consumed
    if (unread > 0) {
      this.#host.counters.bufferedBytes -= unread
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
    if (this.#ackTimer !== null) clearTimeout(this.#ackTimer)
    this.#ackTimer = null
    this.#host.streamClosed(this, this.#recvMax - this.#host.options.initialStreamWindowBytes)
  }
}
