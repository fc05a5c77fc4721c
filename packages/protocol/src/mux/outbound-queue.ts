import type { Duplex } from 'node:stream'
import { MuxError } from '../errors.js'
import { FLAG, FRAME_TYPE, encodeHeader } from './frame.js'
import type { FrameType } from './frame.js'

/** Limits of an {@link OutboundQueue}. */
export interface OutboundQueueOptions {
  /** Answers to the peer's frames that may wait while the transport is blocked (`maxQueuedControlFrames`). */
  maxQueuedAnswers: number
  /** Queued bytes above which writers wait in {@link OutboundQueue.whenWritable} though the transport has not pushed back. */
  maxQueuedBytes: number
}

/** The part of an {@link OutboundQueue} that streams and the pinger send through. */
export interface FrameSink {
  /** Whether the session ended: frames sent now are dropped. */
  readonly closed: boolean
  /** Queues a frame without payload; one with the ACK flag answers the peer and counts against the answer cap. */
  sendFrame: (type: FrameType, flags: number, streamId: number, length: number) => void
  /** Queues a DATA frame with its payload. */
  sendData: (streamId: number, payload: Buffer) => void
  /** Runs `cb` at once if the queue has room, else once the transport drained (or the session ended). */
  whenWritable: (cb: () => void) => void
}

/**
 * A session's frames on their way to the transport. Frames queued in one event-loop turn go out in one
 * corked batch (one writev on TCP, one message on WebSocket). Once `write()` returns false everything
 * is held here until `'drain'` (STYLE §7) rather than growing the transport's unbounded buffer, and the
 * part of this queue that only the peer controls (answers to its PINGs and SYNs) is capped.
 */
export class OutboundQueue implements FrameSink {
  readonly #transport: Duplex
  readonly #maxAnswers: number
  readonly #maxBytes: number
  #out: Buffer[] = []
  #outBytes = 0
  // How many frames in #out answer a peer's frame: the part of the queue only the peer controls.
  #answers = 0
  #dataBytesSent = 0
  #flushScheduled = false
  #blocked = false
  #closed = false
  #waiters: Array<() => void> = []

  constructor (transport: Duplex, options: OutboundQueueOptions) {
    this.#transport = transport
    this.#maxAnswers = options.maxQueuedAnswers
    this.#maxBytes = options.maxQueuedBytes
    transport.on('drain', this.#onDrain)
  }

  get closed (): boolean {
    return this.#closed
  }

  /** Whether the transport's `write()` returned false and it has not drained since. */
  get blocked (): boolean {
    return this.#blocked
  }

  /** Answers queued and not yet written; never above `maxQueuedAnswers`. */
  get queuedAnswers (): number {
    return this.#answers
  }

  /** DATA payload bytes queued since the start (written or about to be). */
  get dataBytesSent (): number {
    return this.#dataBytesSent
  }

  sendFrame (type: FrameType, flags: number, streamId: number, length: number): void {
    if (this.#closed) return
    this.#push(encodeHeader(type, flags, streamId, length))
    if ((flags & FLAG.ACK) === FLAG.ACK) this.#answers++
  }

  /** Queues the RST that refuses the peer's SYN of `streamId`: an answer like an ACK. */
  sendRefusal (streamId: number): void {
    if (this.#closed) return
    this.#push(encodeHeader(FRAME_TYPE.WINDOW_UPDATE, FLAG.RST, streamId, 0))
    this.#answers++
  }

  sendData (streamId: number, payload: Buffer): void {
    if (this.#closed) return
    this.#dataBytesSent += payload.length
    this.#push(encodeHeader(FRAME_TYPE.DATA, 0, streamId, payload.length))
    this.#push(payload)
  }

  whenWritable (cb: () => void): void {
    if (this.#closed || (!this.#blocked && this.#outBytes < this.#maxBytes)) cb()
    else this.#waiters.push(cb)
  }

  /**
   * Makes room for one more answer to the peer, or returns the `SLK_ERR_MUX_CONTROL_FLOOD` error when
   * `maxQueuedAnswers` answers already wait for a transport that is not draining. Only answers count:
   * the peer alone decides how many it asks for, while the frames we originate are bounded by
   * maxStreams and the stream windows. Checked before the PING or SYN is acted on, so a session that
   * fails leaves no half-accepted stream behind.
   */
  roomForAnswer (what: 'PINGs' | 'SYNs'): MuxError | undefined {
    if (this.#answers < this.#maxAnswers) return undefined
    if (this.#blocked) {
      return new MuxError('SLK_ERR_MUX_CONTROL_FLOOD', `peer kept sending ${what} while not reading our answers: maxQueuedControlFrames (${this.#maxAnswers}) answers already wait for the transport to drain`, { closeReason: 'protocol-error' })
    }
    // Not blocked: the answers only wait for this turn's flush. Write them now, so a burst in one chunk
    // (many PINGs in one TCP read) cannot pile up answers past the cap either.
    this.flush()
    return undefined
  }

  /** Writes what is queued now (normally it goes out once per event-loop turn). */
  readonly flush = (): void => {
    this.#flushScheduled = false
    if (this.#blocked || this.#closed) return
    const out = this.#out
    if (out.length > 0) {
      this.#out = []
      this.#outBytes = 0
      this.#answers = 0
      const transport = this.#transport
      if (transport.destroyed || transport.writableEnded) return
      let ok: boolean
      const first = out[0]
      if (out.length === 1 && first !== undefined) {
        ok = transport.write(first)
      } else {
        transport.cork()
        ok = true
        for (const buf of out) ok = transport.write(buf)
        transport.uncork()
      }
      if (!ok || transport.writableNeedDrain) {
        this.#blocked = true
        return
      }
    }
    this.#wakeWriters()
  }

  /**
   * Ends the queue once: later frames are dropped and waiting writers are woken. With `endTransport`
   * what is queued (say a GoAway) is written and the transport ended, blocked or not; otherwise it is dropped.
   */
  close (endTransport: boolean): void {
    if (this.#closed) return
    this.#closed = true
    const transport = this.#transport
    transport.off('drain', this.#onDrain)
    const out = this.#out
    this.#out = []
    this.#outBytes = 0
    this.#answers = 0
    if (endTransport && !transport.destroyed && !transport.writableEnded) {
      transport.cork()
      for (const buf of out) transport.write(buf)
      transport.end()
      transport.uncork()
    }
    this.#wakeWriters()
  }

  #push (buf: Buffer): void {
    this.#out.push(buf)
    this.#outBytes += buf.length
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.flush)
    }
  }

  readonly #onDrain = (): void => {
    this.#blocked = false
    // Frames held while blocked go first; writers resume only if the transport still takes more.
    this.flush()
  }

  #wakeWriters (): void {
    if (this.#waiters.length === 0) return
    const waiters = this.#waiters
    this.#waiters = []
    for (const cb of waiters) cb()
  }
}
