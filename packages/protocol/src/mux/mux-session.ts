import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import { MuxError } from '../errors.js'
import type { GoAwayReason } from '../errors.js'
import { FLAG, FRAME_TYPE, GO_AWAY_CODE, encodeHeader, frameTypeName } from './frame.js'
import type { FrameHeader, FrameType } from './frame.js'
import { FrameParser } from './frame-parser.js'
import { validateMuxSessionOptions } from './options.js'
import type { MuxSessionOptions, ResolvedMuxSessionOptions } from './options.js'
import { MuxStream, kAbort, kAnnounce, kOnData, kOnFin, kOnReset, kOnWindowUpdate, kRecvAvailable } from './mux-stream.js'
import type { MuxCounters, StreamHost } from './mux-stream.js'

/** The subset of a pino `Logger` the session uses (pino's `Logger` satisfies it). */
export interface MuxLogger {
  debug: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

/** Injected dependencies of {@link createMuxSession}. */
export interface MuxSessionDeps {
  /** Gets a warn line per peer misbehaviour and debug lines per session state change. */
  logger?: MuxLogger
}

/** Live counters of a session, for metrics and tests. */
export interface MuxStats {
  /** Streams in the session's map (opened or accepted, not yet closed on the wire). */
  readonly streamsOpen: number
  /** Streams we opened. */
  readonly streamsOpenedTotal: number
  /** Inbound streams handed to a `'stream'` listener. */
  readonly streamsAcceptedTotal: number
  /** Inbound streams refused with RST (stream limit, accept backlog, after GoAway). */
  readonly streamsRefusedTotal: number
  /** DATA payload bytes received. */
  readonly bytesIn: number
  /** DATA payload bytes sent. */
  readonly bytesOut: number
  /** Times a writer had to wait for window credit. */
  readonly windowStalls: number
  /** Last measured round-trip time, if any ping was answered. */
  readonly rttMs: number | undefined
  /** Protocol errors the peer committed (each one ended the session). */
  readonly protocolErrors: number
  /** Bytes received on all streams and not yet read by the application. */
  readonly bufferedBytes: number
  /**
   * Answers to the peer's frames (PING ACKs, ACKs and refusing RSTs of its SYNs) queued and not yet
   * written to the transport; never above `maxQueuedControlFrames`.
   */
  readonly queuedControlFrames: number
}

/** Options of {@link MuxSession.ping}. */
export interface MuxPingOptions {
  signal?: AbortSignal
  /** @default MuxSessionOptions.pingTimeoutMs */
  timeoutMs?: number
}

/** Options of {@link MuxSession.close}. */
export interface MuxCloseOptions {
  /** @default MuxSessionOptions.closeGraceMs */
  graceMs?: number
}

interface PendingPing {
  start: number
  resolve: (rttMs: number) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
  cleanup: () => void
}

const GO_AWAY_REASONS: readonly GoAwayReason[] = ['normal', 'protocol-error', 'internal-error']

/**
 * A yamux session (hashicorp spec) over any byte `Duplex`: a TCP socket or {@link createWebSocketDuplex}.
 * Emits `'stream'` (stream) per accepted inbound stream, `'goaway'` (reason) when the peer sends GoAway,
 * `'rtt'` (ms) per answered ping and `'close'` (err?) once after everything is torn down.
 */
export class MuxSession extends EventEmitter {
  readonly #transport: Duplex
  readonly #options: ResolvedMuxSessionOptions
  readonly #logger: MuxLogger | undefined
  readonly #role: 'client' | 'server'
  readonly #streams = new Map<number, MuxStream>()
  readonly #parser: FrameParser
  readonly #counters: MuxCounters = {
    streamsOpenedTotal: 0,
    streamsAcceptedTotal: 0,
    streamsRefusedTotal: 0,
    bytesIn: 0,
    bytesOut: 0,
    windowStalls: 0,
    protocolErrors: 0,
    bufferedBytes: 0,
  }

  readonly #host: StreamHost
  readonly #stats: MuxStats
  #nextId: number
  #lastPeerId = 0
  #out: Buffer[] = []
  #outBytes = 0
  // How many frames in #out answer a peer's frame: the part of the queue only the peer controls.
  #outAnswers = 0
  #flushScheduled = false
  #transportBlocked = false
  #drainWaiters: Array<() => void> = []
  #pings = new Map<number, PendingPing>()
  #nextPingId = 0
  #rttMs: number | undefined
  #keepaliveTimer: NodeJS.Timeout | undefined
  #keepaliveInFlight = false
  #windowReserved = 0
  #backlog: MuxStream[] = []
  #localGoAway = false
  #remoteGoAway: GoAwayReason | undefined
  #closed = false
  #closeEmitted = false
  #closePromise: Promise<void> | undefined
  #onStreamsEmpty: (() => void) | undefined
  #transportCloseTimer: NodeJS.Timeout | undefined
  // The stream the current DATA frame's payload goes to (undefined: drain it).
  #dataTarget: MuxStream | undefined
  // Streams we opened that the peer has not answered yet, with their deadlines. Every deadline is the
  // open time + streamOpenTimeoutMs, so insertion order is deadline order and one timer armed for the
  // oldest serves them all; an answered stream costs nothing but its Map entry being deleted.
  readonly #unanswered = new Map<MuxStream, number>()
  #openTimer: NodeJS.Timeout | undefined

  /** @internal Use {@link createMuxSession}. */
  constructor (transport: Duplex, role: 'client' | 'server', options: MuxSessionOptions = {}, deps: MuxSessionDeps = {}) {
    super()
    this.#options = validateMuxSessionOptions(options)
    this.#transport = transport
    this.#role = role
    this.#logger = deps.logger
    this.#nextId = role === 'client' ? 1 : 2
    const counters = this.#counters
    this.#host = {
      options: this.#options,
      counters,
      sendFrame: (type, flags, streamId, length) => { this.#sendFrame(type, flags, streamId, length) },
      sendData: (streamId, payload) => { this.#sendData(streamId, payload) },
      writeBlocked: () => this.#transportBlocked || this.#outBytes >= 4 * this.#options.maxDataFrameBytes,
      onceWritable: (cb) => { this.#drainWaiters.push(cb) },
      streamClosed: (stream, extra) => { this.#streamClosed(stream, extra) },
      reserveWindow: (bytes) => {
        const granted = Math.max(0, Math.min(bytes, this.#options.maxSessionWindowBytes - this.#windowReserved))
        this.#windowReserved += granted
        return granted
      },
      rttMs: () => this.#rttMs,
      alive: () => !this.#closed,
    }
    const streams = this.#streams
    const rttOf = (): number | undefined => this.#rttMs
    const answersOf = (): number => this.#outAnswers
    this.#stats = {
      get streamsOpen () { return streams.size },
      get streamsOpenedTotal () { return counters.streamsOpenedTotal },
      get streamsAcceptedTotal () { return counters.streamsAcceptedTotal },
      get streamsRefusedTotal () { return counters.streamsRefusedTotal },
      get bytesIn () { return counters.bytesIn },
      get bytesOut () { return counters.bytesOut },
      get windowStalls () { return counters.windowStalls },
      get rttMs () { return rttOf() },
      get protocolErrors () { return counters.protocolErrors },
      get bufferedBytes () { return counters.bufferedBytes },
      get queuedControlFrames () { return answersOf() },
    }
    this.#parser = new FrameParser({
      onHeader: (h) => { this.#onHeader(h) },
      onPayload: (h, piece) => { this.#onPayload(piece) },
      onDataEnd: (h) => { this.#onDataEnd(h) },
    }, { maxDataBytes: Math.max(this.#options.maxStreamWindowBytes, this.#options.initialStreamWindowBytes) })

    transport.on('data', this.#onTransportData)
    transport.on('end', this.#onTransportEnd)
    transport.on('error', this.#onTransportError)
    transport.on('close', this.#onTransportClose)
    transport.on('drain', this.#onTransportDrain)
    this.on('newListener', (event: string | symbol) => {
      if (event === 'stream' && this.#backlog.length > 0) process.nextTick(() => { this.#deliverBacklog() })
    })

    if (this.#options.windowAutoTuning) {
      // One ping at start gives auto-tuning an RTT before the first window fills.
      this.ping({ timeoutMs: this.#options.keepaliveTimeoutMs }).catch(() => {
        // A peer that never answers is caught by keepalive; auto-tuning just stays off.
      })
    }
    if (this.#options.keepaliveIntervalMs > 0) {
      this.#keepaliveTimer = setInterval(() => { this.#keepalive() }, this.#options.keepaliveIntervalMs)
      this.#keepaliveTimer.unref()
    }
  }

  /** Whether the session has ended (aborted, closed, or its transport went away). */
  get closed (): boolean {
    return this.#closed
  }

  /** The reason of the GoAway the peer sent, if it sent one. */
  get remoteGoAway (): GoAwayReason | undefined {
    return this.#remoteGoAway
  }

  /** Live counters. */
  get stats (): MuxStats {
    return this.#stats
  }

  /**
   * Opens a stream; its SYN goes out at once on a WINDOW_UPDATE frame.
   * @throws MuxError `SLK_ERR_MUX_SESSION_CLOSED`, `SLK_ERR_MUX_GO_AWAY` (either side sent GoAway), `SLK_ERR_MUX_STREAM_LIMIT`.
   */
  openStream (): MuxStream {
    if (this.#closed) throw new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'cannot open a stream: the mux session is closed')
    if (this.#remoteGoAway !== undefined) throw new MuxError('SLK_ERR_MUX_GO_AWAY', `cannot open a stream: the peer sent GoAway (${this.#remoteGoAway})`)
    if (this.#localGoAway) throw new MuxError('SLK_ERR_MUX_GO_AWAY', 'cannot open a stream: this session sent GoAway')
    if (this.#streams.size >= this.#options.maxStreams) {
      throw new MuxError('SLK_ERR_MUX_STREAM_LIMIT', `cannot open a stream: ${this.#streams.size} streams are open and maxStreams is ${this.#options.maxStreams}`)
    }
    const id = this.#nextId
    if (id > 0xffff_fffe) throw new MuxError('SLK_ERR_MUX_STREAM_LIMIT', 'cannot open a stream: stream ids are exhausted; open a new session')
    this.#nextId += 2
    const stream = new MuxStream(id, this, this.#host)
    this.#streams.set(id, stream)
    this.#counters.streamsOpenedTotal++
    const timeoutMs = this.#options.streamOpenTimeoutMs
    if (timeoutMs > 0) {
      this.#unanswered.set(stream, performance.now() + timeoutMs)
      this.#armOpenTimer()
    }
    stream[kAnnounce](FLAG.SYN)
    return stream
  }

  /**
   * Measures the round-trip time with a PING frame.
   * @throws MuxError `SLK_ERR_MUX_PING_TIMEOUT`, `SLK_ERR_MUX_SESSION_CLOSED`; or the signal's reason.
   */
  async ping (options: MuxPingOptions = {}): Promise<number> {
    if (this.#closed) throw new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'cannot ping: the mux session is closed')
    const { signal } = options
    signal?.throwIfAborted()
    const timeoutMs = options.timeoutMs ?? this.#options.pingTimeoutMs
    const id = this.#nextPingId
    this.#nextPingId = (this.#nextPingId + 1) >>> 0
    return await new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        pending.cleanup()
        reject(signal?.reason)
      }
      const pending: PendingPing = {
        start: performance.now(),
        resolve,
        reject,
        timer: setTimeout(() => {
          pending.cleanup()
          reject(new MuxError('SLK_ERR_MUX_PING_TIMEOUT', `peer did not answer ping ${id} within ${timeoutMs} ms`))
        }, timeoutMs),
        cleanup: () => {
          clearTimeout(pending.timer)
          signal?.removeEventListener('abort', onAbort)
          this.#pings.delete(id)
        },
      }
      pending.timer.unref()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#pings.set(id, pending)
      this.#sendFrame(FRAME_TYPE.PING, FLAG.SYN, 0, id)
    })
  }

  /** Sends GoAway: no new streams either way after it; existing streams go on. */
  goAway (reason: GoAwayReason = 'normal'): void {
    if (this.#closed || this.#localGoAway) return
    this.#localGoAway = true
    this.#sendFrame(FRAME_TYPE.GO_AWAY, 0, 0, GO_AWAY_CODE[reason])
  }

  /**
   * Ends the session gracefully and idempotently: GoAway, up to `graceMs` for open streams to end, then
   * the rest are reset and the transport ended; resolves once the transport closed and timers are gone.
   */
  async close (options: MuxCloseOptions = {}): Promise<void> {
    this.#closePromise ??= this.#close(options.graceMs ?? this.#options.closeGraceMs)
    await this.#closePromise
  }

  async #close (graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.#closeEmitted) resolve()
      else this.once('close', () => { resolve() })
    })
    if (this.#closed) {
      await closed
      return
    }
    this.goAway('normal')
    if (this.#streams.size > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          this.off('close', done)
          resolve()
        }
        const timer = setTimeout(done, graceMs)
        this.#onStreamsEmpty = done
        this.once('close', done)
      })
      this.#onStreamsEmpty = undefined
    }
    if (!this.#closed) {
      for (const stream of [...this.#streams.values()]) {
        if (this.#backlog.includes(stream)) {
          stream.destroy()
          continue
        }
        stream.destroy(new MuxError('SLK_ERR_MUX_SESSION_CLOSED', `stream ${stream.id} was still open when the session closed`))
      }
      this.#teardown(undefined, graceMs)
    }
    await closed
  }

  /** Ends the session at once: every stream is destroyed with `err` (or `SLK_ERR_MUX_SESSION_CLOSED`) and the transport destroyed. */
  abort (err?: Error): void {
    if (this.#closed) return
    this.#teardown(err ?? new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'the mux session was aborted'), 0)
  }

  // --- outbound -------------------------------------------------------------------------------

  /**
   * `answer`: the frame answers one of the peer's (a PING ACK, the ACK of its SYN, an RST refusing it).
   * Only those count against maxQueuedControlFrames: the peer alone decides how many it asks for, while
   * the frames we originate are bounded by maxStreams and the stream windows. Only ACK frames answer,
   * so that is the default; the refusing RST says so explicitly. Callers check {@link #roomForAnswer} first.
   */
  #sendFrame (type: FrameType, flags: number, streamId: number, length: number, answer = (flags & FLAG.ACK) === FLAG.ACK): void {
    if (this.#closed) return
    this.#enqueue(encodeHeader(type, flags, streamId, length))
    if (answer) this.#outAnswers++
  }

  /**
   * Makes room for one more answer to the peer, or returns the `SLK_ERR_MUX_CONTROL_FLOOD` error when
   * maxQueuedControlFrames answers already wait for a transport that is not draining. Checked before the
   * PING or SYN is acted on, so a session that fails leaves no half-accepted stream behind.
   */
  #roomForAnswer (what: 'PINGs' | 'SYNs'): MuxError | undefined {
    const max = this.#options.maxQueuedControlFrames
    if (this.#outAnswers < max) return undefined
    if (this.#transportBlocked) {
      return new MuxError('SLK_ERR_MUX_CONTROL_FLOOD', `peer kept sending ${what} while not reading our answers: maxQueuedControlFrames (${max}) answers already wait for the transport to drain`, { closeReason: 'protocol-error' })
    }
    // The transport is taking bytes: hand it the batch now instead of at the end of the tick, so one
    // inbound chunk full of PINGs (5461 per 64 KiB) cannot pile up answers past the cap either.
    this.#flush()
    return undefined
  }

  #sendData (streamId: number, payload: Buffer): void {
    if (this.#closed) return
    this.#counters.bytesOut += payload.length
    this.#enqueue(encodeHeader(FRAME_TYPE.DATA, 0, streamId, payload.length))
    this.#enqueue(payload)
  }

  #enqueue (buf: Buffer): void {
    this.#out.push(buf)
    this.#outBytes += buf.length
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flush)
    }
  }

  // Frames queued in one tick go out in one corked batch: one writev on TCP, one message on WebSocket.
  readonly #flush = (): void => {
    this.#flushScheduled = false
    // write() returned false: hold everything here until 'drain' (STYLE §7) rather than grow the
    // transport's unbounded buffer; this queue is what maxQueuedControlFrames can then bound.
    if (this.#transportBlocked) return
    const out = this.#out
    if (out.length > 0) {
      this.#out = []
      this.#outBytes = 0
      this.#outAnswers = 0
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
        this.#transportBlocked = true
        return
      }
    }
    this.#runDrainWaiters()
  }

  readonly #onTransportDrain = (): void => {
    this.#transportBlocked = false
    // Frames held while blocked go first; writers resume only if the transport still takes more.
    this.#flush()
  }

  #runDrainWaiters (): void {
    if (this.#drainWaiters.length === 0) return
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const cb of waiters) cb()
  }

  // --- inbound --------------------------------------------------------------------------------

  readonly #onTransportData = (chunk: Buffer): void => {
    try {
      this.#parser.push(chunk)
    } catch (err) {
      this.#protocolError(err)
    }
  }

  #onHeader (h: FrameHeader): void {
    switch (h.type) {
      case FRAME_TYPE.DATA:
      case FRAME_TYPE.WINDOW_UPDATE:
        this.#onStreamFrame(h)
        return
      case FRAME_TYPE.PING:
        this.#onPing(h)
        return
      case FRAME_TYPE.GO_AWAY:
        this.#onGoAway(h)
    }
  }

  #onStreamFrame (h: FrameHeader): void {
    const { streamId: id, flags, type } = h
    this.#dataTarget = undefined
    if (id === 0) {
      throw new MuxError('SLK_ERR_MUX_PROTOCOL', `peer sent ${frameTypeName(type)} on stream 0, which is reserved for the session`, { closeReason: 'protocol-error' })
    }
    let stream = this.#streams.get(id)
    if ((flags & FLAG.SYN) === FLAG.SYN) {
      const peerParity = this.#role === 'client' ? 0 : 1
      if (id % 2 !== peerParity) {
        throw new MuxError('SLK_ERR_MUX_PROTOCOL', `peer sent SYN for stream ${id}, but the ${this.#role === 'client' ? 'server' : 'client'} must use ${peerParity === 0 ? 'even' : 'odd'} ids`, { closeReason: 'protocol-error' })
      }
      if (stream !== undefined || id <= this.#lastPeerId) {
        throw new MuxError('SLK_ERR_MUX_DUPLICATE_STREAM', `peer sent SYN for stream ${id}, an id it already used`, { closeReason: 'protocol-error' })
      }
      this.#lastPeerId = id
      stream = this.#incoming(id)
    } else if (stream === undefined) {
      const ours = id % 2 === (this.#role === 'client' ? 1 : 0)
      const known = ours ? id < this.#nextId : id <= this.#lastPeerId
      // hashicorp session.go drains frames for streams it already forgot: they legitimately cross a close.
      if (known) return
      throw new MuxError('SLK_ERR_MUX_UNKNOWN_STREAM', `peer sent ${frameTypeName(type)} on stream ${id}, which was never opened`, { closeReason: 'protocol-error' })
    }
    if (stream === undefined) return // refused with RST: drain
    // Any frame on the stream (ACK, data, FIN, RST) shows the peer has it: no open timeout any more.
    this.#unanswered.delete(stream)
    if (type === FRAME_TYPE.DATA) {
      const available = stream[kRecvAvailable]
      if (h.length > available) {
        throw new MuxError('SLK_ERR_MUX_WINDOW_EXCEEDED', `peer sent ${h.length} bytes on stream ${id} with a ${available}-byte window`, { closeReason: 'protocol-error' })
      }
      this.#dataTarget = stream
      return
    }
    // WINDOW_UPDATE: ACK needs no action (data may flow before it), the length is credit.
    if (h.length > 0) stream[kOnWindowUpdate](h.length)
    this.#streamFlags(stream, flags)
  }

  #onPayload (piece: Buffer): void {
    this.#counters.bytesIn += piece.length
    const stream = this.#dataTarget
    if (stream !== undefined) stream[kOnData](piece)
  }

  #onDataEnd (h: FrameHeader): void {
    const stream = this.#dataTarget
    this.#dataTarget = undefined
    if (stream !== undefined) this.#streamFlags(stream, h.flags)
  }

  #streamFlags (stream: MuxStream, flags: number): void {
    if ((flags & FLAG.RST) === FLAG.RST) {
      stream[kOnReset]()
      return
    }
    if ((flags & FLAG.FIN) === FLAG.FIN) stream[kOnFin]()
  }

  #incoming (id: number): MuxStream | undefined {
    const flood = this.#roomForAnswer('SYNs')
    if (flood !== undefined) throw flood
    const refuse = (why: string): undefined => {
      this.#counters.streamsRefusedTotal++
      this.#logger?.debug({ streamId: id, reason: why }, 'stream refused')
      this.#sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.RST, id, 0, true)
      return undefined
    }
    if (this.#localGoAway) return refuse('goaway')
    if (this.#streams.size >= this.#options.maxStreams) return refuse('stream-limit')
    const listening = this.listenerCount('stream') > 0
    if (!listening && this.#backlog.length >= this.#options.maxAcceptBacklog) return refuse('accept-backlog')
    const stream = new MuxStream(id, this, this.#host)
    this.#streams.set(id, stream)
    if (listening) this.#accept(stream)
    else this.#backlog.push(stream)
    return stream
  }

  #accept (stream: MuxStream): void {
    this.#counters.streamsAcceptedTotal++
    stream[kAnnounce](FLAG.ACK)
    this.emit('stream', stream)
  }

  #deliverBacklog (): void {
    while (this.#backlog.length > 0 && this.listenerCount('stream') > 0 && !this.#closed) {
      // Accepting sends the ACK, an answer like any other (the rest of the backlog stays unaccepted).
      const flood = this.#roomForAnswer('SYNs')
      if (flood !== undefined) {
        this.#protocolError(flood)
        return
      }
      const stream = this.#backlog.shift()
      if (stream !== undefined && !stream.destroyed) this.#accept(stream)
    }
  }

  #onPing (h: FrameHeader): void {
    if ((h.flags & FLAG.SYN) === FLAG.SYN) {
      const flood = this.#roomForAnswer('PINGs')
      if (flood !== undefined) throw flood
      this.#sendFrame(FRAME_TYPE.PING, FLAG.ACK, 0, h.length)
      return
    }
    if ((h.flags & FLAG.ACK) === FLAG.ACK) {
      const pending = this.#pings.get(h.length)
      if (pending === undefined) return // answered after its timeout
      pending.cleanup()
      const rtt = performance.now() - pending.start
      this.#rttMs = rtt
      pending.resolve(rtt)
      this.emit('rtt', rtt)
    }
  }

  #onGoAway (h: FrameHeader): void {
    const reason = GO_AWAY_REASONS[h.length]
    if (reason === undefined) {
      throw new MuxError('SLK_ERR_MUX_PROTOCOL', `peer sent GoAway with unknown code ${h.length}; codes are 0-2`, { closeReason: 'protocol-error' })
    }
    this.#remoteGoAway = reason
    this.#logger?.debug({ reason }, 'peer sent goaway')
    this.emit('goaway', reason)
    if (reason !== 'normal') {
      // hashicorp session.go handleGoAway: an error GoAway ends the session.
      this.abort(new MuxError('SLK_ERR_MUX_GO_AWAY', `peer ended the session with GoAway (${reason})`))
    }
  }

  #keepalive (): void {
    if (this.#keepaliveInFlight || this.#closed) return
    this.#keepaliveInFlight = true
    this.ping({ timeoutMs: this.#options.keepaliveTimeoutMs }).then(() => {
      this.#keepaliveInFlight = false
    }, (err: unknown) => {
      this.#keepaliveInFlight = false
      if (err instanceof MuxError && err.code === 'SLK_ERR_MUX_PING_TIMEOUT') {
        this.abort(new MuxError('SLK_ERR_MUX_KEEPALIVE_TIMEOUT', `peer did not answer a keepalive ping within ${this.#options.keepaliveTimeoutMs} ms`, { cause: err }))
      }
    })
  }

  #armOpenTimer (): void {
    if (this.#openTimer !== undefined) return
    // Only the first entry matters: it is the oldest open, so its deadline is the earliest.
    for (const deadline of this.#unanswered.values()) {
      this.#openTimer = setTimeout(this.#expireOpens, Math.max(0, deadline - performance.now()))
      this.#openTimer.unref()
      return
    }
  }

  readonly #expireOpens = (): void => {
    this.#openTimer = undefined
    const timeoutMs = this.#options.streamOpenTimeoutMs
    let now: number | undefined
    for (const [stream, deadline] of this.#unanswered) {
      // A timer can fire a millisecond before performance.now() agrees; the oldest is due if it fired.
      now ??= Math.max(performance.now(), deadline)
      if (deadline > now) break
      this.#unanswered.delete(stream)
      this.#logger?.debug({ streamId: stream.id, timeoutMs }, 'stream open timed out')
      // destroy() before both FINs sends the RST, so a peer that answers late finds the stream gone.
      stream.destroy(new MuxError('SLK_ERR_MUX_STREAM_OPEN_TIMEOUT', `peer did not answer the SYN of stream ${stream.id} within ${timeoutMs} ms`))
    }
    this.#armOpenTimer()
  }

  // --- teardown -------------------------------------------------------------------------------

  #protocolError (err: unknown): void {
    if (this.#closed) return
    const error = err instanceof MuxError
      ? err
      : new MuxError('SLK_ERR_MUX_PROTOCOL', `mux session failed while handling a frame: ${String(err)}`, { cause: err, closeReason: 'internal-error' })
    this.#parser.stop()
    this.#counters.protocolErrors++
    this.#logger?.warn({ err: error }, 'mux peer misbehaved')
    if (!this.#localGoAway) {
      this.#localGoAway = true
      this.#enqueue(encodeHeader(FRAME_TYPE.GO_AWAY, 0, 0, GO_AWAY_CODE[error.closeReason ?? 'protocol-error']))
    }
    this.#teardown(error, this.#options.closeGraceMs)
  }

  readonly #onTransportEnd = (): void => {
    this.#transportGone(undefined)
  }

  readonly #onTransportError = (err: Error): void => {
    this.#transportGone(err)
  }

  readonly #onTransportClose = (): void => {
    this.#transportGone(undefined)
    this.#emitClose()
  }

  #transportGone (cause: Error | undefined): void {
    if (this.#closed) return
    const clean = cause === undefined && this.#streams.size === 0 && !this.#parser.midFrame &&
      (this.#remoteGoAway !== undefined || this.#localGoAway)
    const err = clean
      ? undefined
      : new MuxError('SLK_ERR_MUX_TRANSPORT_CLOSED', cause === undefined ? 'the mux transport closed' : `the mux transport failed: ${cause.message}`, cause === undefined ? undefined : { cause })
    this.#teardown(err, 0)
  }

  #closeError: Error | undefined

  /**
   * Tears everything down once. With `lingerMs` > 0 the transport is ended (queued frames such as a
   * GoAway still go out) and destroyed if it has not closed after `lingerMs`; with 0 it is destroyed now.
   */
  #teardown (err: Error | undefined, lingerMs: number): void {
    if (this.#closed) return
    this.#closed = true
    this.#closeError = err
    this.#parser.stop()
    if (this.#keepaliveTimer !== undefined) clearInterval(this.#keepaliveTimer)
    this.#keepaliveTimer = undefined
    if (this.#openTimer !== undefined) clearTimeout(this.#openTimer)
    this.#openTimer = undefined
    this.#unanswered.clear()
    for (const ping of [...this.#pings.values()]) {
      ping.cleanup()
      ping.reject(new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'the mux session closed before the peer answered the ping', err === undefined ? undefined : { cause: err }))
    }
    const streamErr = err ?? new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'the mux session closed')
    const streams = [...this.#streams.values()]
    // Nobody holds a stream still in the accept backlog, so nobody could handle an error event.
    const unaccepted = new Set(this.#backlog)
    this.#streams.clear()
    this.#backlog = []
    for (const stream of streams) stream[kAbort](unaccepted.has(stream) ? undefined : streamErr)
    this.#windowReserved = 0
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const cb of waiters) cb()
    this.#onStreamsEmpty?.()
    this.#logger?.debug({ err }, 'mux session closed')
    const transport = this.#transport
    if (lingerMs > 0 && !transport.destroyed) {
      const out = this.#out
      this.#out = []
      this.#outBytes = 0
      this.#outAnswers = 0
      if (!transport.writableEnded) {
        transport.cork()
        for (const buf of out) transport.write(buf)
        transport.end()
        transport.uncork()
      }
      this.#transportCloseTimer = setTimeout(() => { transport.destroy() }, lingerMs)
      this.#transportCloseTimer.unref()
    } else {
      this.#out = []
      this.#outBytes = 0
      this.#outAnswers = 0
      transport.destroy()
    }
    if (transport.closed) process.nextTick(() => { this.#emitClose() })
  }

  #emitClose (): void {
    if (this.#closeEmitted || !this.#closed) return
    this.#closeEmitted = true
    if (this.#transportCloseTimer !== undefined) clearTimeout(this.#transportCloseTimer)
    this.#transportCloseTimer = undefined
    const t = this.#transport
    t.off('data', this.#onTransportData)
    t.off('end', this.#onTransportEnd)
    t.off('close', this.#onTransportClose)
    t.off('drain', this.#onTransportDrain)
    // 'error' stays handled: a late transport error must not become an uncaught exception.
    this.emit('close', this.#closeError)
  }

  #streamClosed (stream: MuxStream, extraWindowBytes: number): void {
    if (this.#streams.get(stream.id) !== stream) return
    this.#streams.delete(stream.id)
    this.#unanswered.delete(stream)
    this.#windowReserved -= extraWindowBytes
    if (this.#streams.size === 0) this.#onStreamsEmpty?.()
  }
}

/**
 * Starts a yamux session over `transport`; the client (the side that dialed) opens odd stream ids, the server even.
 * @throws MuxError `SLK_ERR_MUX_INVALID_OPTION` naming the bad option.
 */
export function createMuxSession (transport: Duplex, role: 'client' | 'server', options?: MuxSessionOptions, deps?: MuxSessionDeps): MuxSession {
  return new MuxSession(transport, role, options, deps)
}

