import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import { MuxError } from '../errors.js'
import { takeChunks } from '../ws-duplex.js'
import type { GoAwayReason } from '../errors.js'
import { SYSTEM_CLOCK } from './clock.js'
import type { MuxClock } from './clock.js'
import { FLAG, FRAME_TYPE, GO_AWAY_CODE, frameTypeName } from './frame.js'
import type { FrameHeader } from './frame.js'
import { FrameParser } from './frame-parser.js'
import { Keepalive } from './keepalive.js'
import { MuxStream } from './mux-stream.js'
import type { StreamCounters, StreamSession } from './mux-stream.js'
import { OpenDeadlines } from './open-deadlines.js'
import { validateMuxSessionOptions } from './options.js'
import type { MuxSessionOptions, ResolvedMuxSessionOptions } from './options.js'
import { OutboundQueue } from './outbound-queue.js'
import { Pinger } from './pinger.js'
import type { MuxPingOptions } from './pinger.js'

export type { MuxPingOptions } from './pinger.js'

/** The subset of a pino `Logger` the session uses (pino's `Logger` satisfies it). */
export interface MuxLogger {
  debug: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

/** Injected dependencies of {@link createMuxSession}. */
export interface MuxSessionDeps {
  /** Gets a warn line per peer misbehaviour and debug lines per session state change. */
  logger?: MuxLogger
  /** Time for keepalive, pings and stream open deadlines. @default SYSTEM_CLOCK */
  clock?: MuxClock
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

/** Options of {@link MuxSession.close}. */
export interface MuxCloseOptions {
  /** @default MuxSessionOptions.closeGraceMs */
  graceMs?: number
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
  readonly #outbound: OutboundQueue
  readonly #pinger: Pinger
  readonly #keepalive: Keepalive | undefined
  // Streams we opened that the peer has not answered yet.
  readonly #unanswered: OpenDeadlines<MuxStream>
  readonly #streamCounters: StreamCounters = { bufferedBytes: 0, windowStalls: 0 }
  readonly #streamSession: StreamSession
  readonly #stats: MuxStats
  #streamsOpenedTotal = 0
  #streamsAcceptedTotal = 0
  #streamsRefusedTotal = 0
  #protocolErrors = 0
  #bytesIn = 0
  #nextId: number
  #lastPeerId = 0
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
  #closeError: Error | undefined

  /** @internal Use {@link createMuxSession}. */
  constructor (transport: Duplex, role: 'client' | 'server', userOptions: MuxSessionOptions = {}, deps: MuxSessionDeps = {}) {
    super()
    const options = validateMuxSessionOptions(userOptions)
    this.#options = options
    this.#transport = transport
    this.#role = role
    this.#logger = deps.logger
    this.#nextId = role === 'client' ? 1 : 2
    const clock = deps.clock ?? SYSTEM_CLOCK
    this.#outbound = new OutboundQueue(transport, {
      maxQueuedAnswers: options.maxQueuedControlFrames,
      // Writers wait once this much is queued even before the transport pushes back.
      maxQueuedBytes: 4 * options.maxDataFrameBytes,
    })
    this.#pinger = new Pinger(this.#outbound, clock, options.pingTimeoutMs, (rtt) => { this.emit('rtt', rtt) })
    this.#unanswered = new OpenDeadlines(options.streamOpenTimeoutMs, clock, (stream) => {
      this.#logger?.debug({ streamId: stream.id, timeoutMs: options.streamOpenTimeoutMs }, 'stream open timed out')
      // destroy() before both FINs sends the RST, so a peer that answers late finds the stream gone.
      stream.destroy(new MuxError('SLK_ERR_MUX_STREAM_OPEN_TIMEOUT', `peer did not answer the SYN of stream ${stream.id} within ${options.streamOpenTimeoutMs} ms`))
    })
    this.#streamSession = {
      options,
      outbound: this.#outbound,
      counters: this.#streamCounters,
      clock,
      getRtt: () => this.#pinger.rttMs,
      reserveWindow: (bytes) => this.#reserveWindow(bytes),
      streamEnded: (stream) => { this.#streamEnded(stream) },
    }
    this.#stats = this.#createStats()
    this.#parser = new FrameParser({
      onHeader: (h) => { this.#onHeader(h) },
      onPayload: (h, piece) => { this.#onPayload(piece) },
      onDataEnd: (h) => { this.#onDataEnd(h) },
    }, { maxDataBytes: Math.max(options.maxStreamWindowBytes, options.initialStreamWindowBytes) })

    transport.on('data', this.#onTransportData)
    // A WebSocket duplex then hands its pieces straight to the parser; 'data' still carries any it buffered.
    takeChunks(transport, this.#onTransportData)
    transport.on('end', this.#onTransportEnd)
    transport.on('error', this.#onTransportError)
    transport.on('close', this.#onTransportClose)
    this.on('newListener', (event: string | symbol) => {
      if (event === 'stream' && this.#backlog.length > 0) process.nextTick(() => { this.#deliverBacklog() })
    })

    if (options.windowAutoTuning) {
      // One ping at start gives auto-tuning an RTT before the first window fills.
      this.ping({ timeoutMs: options.keepaliveTimeoutMs }).catch(() => {
        // A peer that never answers is caught by keepalive; auto-tuning just stays off.
      })
    }
    this.#keepalive = options.keepaliveIntervalMs > 0
      ? new Keepalive(options, clock, async () => this.ping({ timeoutMs: options.keepaliveTimeoutMs }), (err) => { this.abort(err) })
      : undefined
  }

  #createStats (): MuxStats {
    const session = this
    const streams = this.#streams
    const counters = this.#streamCounters
    return {
      get streamsOpen () { return streams.size },
      get streamsOpenedTotal () { return session.#streamsOpenedTotal },
      get streamsAcceptedTotal () { return session.#streamsAcceptedTotal },
      get streamsRefusedTotal () { return session.#streamsRefusedTotal },
      get bytesIn () { return session.#bytesIn },
      get bytesOut () { return session.#outbound.dataBytesSent },
      get windowStalls () { return counters.windowStalls },
      get rttMs () { return session.#pinger.rttMs },
      get protocolErrors () { return session.#protocolErrors },
      get bufferedBytes () { return counters.bufferedBytes },
      get queuedControlFrames () { return session.#outbound.queuedAnswers },
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
    const stream = new MuxStream(id, this.#streamSession)
    this.#streams.set(id, stream)
    this.#streamsOpenedTotal++
    this.#unanswered.add(stream)
    stream.sendSyn()
    return stream
  }

  /**
   * Measures the round-trip time with a PING frame.
   * @throws MuxError `SLK_ERR_MUX_PING_TIMEOUT`, `SLK_ERR_MUX_SESSION_CLOSED`; or the signal's reason.
   */
  async ping (options: MuxPingOptions = {}): Promise<number> {
    if (this.#closed) throw new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'cannot ping: the mux session is closed')
    return this.#pinger.ping(options)
  }

  /** Sends GoAway: no new streams either way after it; existing streams go on. */
  goAway (reason: GoAwayReason = 'normal'): void {
    if (this.#closed || this.#localGoAway) return
    this.#localGoAway = true
    this.#outbound.sendFrame(FRAME_TYPE.GO_AWAY, 0, 0, GO_AWAY_CODE[reason])
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

  // --- inbound --------------------------------------------------------------------------------

  readonly #onTransportData = (chunk: Buffer): void => {
    this.#keepalive?.heard()
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
      const available = stream.receiveAvailableBytes
      if (h.length > available) {
        throw new MuxError('SLK_ERR_MUX_WINDOW_EXCEEDED', `peer sent ${h.length} bytes on stream ${id} with a ${available}-byte window`, { closeReason: 'protocol-error' })
      }
      this.#dataTarget = stream
      return
    }
    // WINDOW_UPDATE: ACK needs no action (data may flow before it), the length is credit.
    if (h.length > 0) stream.handleWindowUpdate(h.length)
    this.#streamFlags(stream, flags)
  }

  #onPayload (piece: Buffer): void {
    this.#bytesIn += piece.length
    const stream = this.#dataTarget
    if (stream !== undefined) stream.handleData(piece)
  }

  #onDataEnd (h: FrameHeader): void {
    const stream = this.#dataTarget
    this.#dataTarget = undefined
    if (stream !== undefined) this.#streamFlags(stream, h.flags)
  }

  #streamFlags (stream: MuxStream, flags: number): void {
    if ((flags & FLAG.RST) === FLAG.RST) {
      stream.handleReset()
      return
    }
    if ((flags & FLAG.FIN) === FLAG.FIN) stream.handleFin()
  }

  #incoming (id: number): MuxStream | undefined {
    const flood = this.#outbound.roomForAnswer('SYNs')
    if (flood !== undefined) throw flood
    const refuse = (why: string): undefined => {
      this.#streamsRefusedTotal++
      this.#logger?.debug({ streamId: id, reason: why }, 'stream refused')
      this.#outbound.sendRefusal(id)
      return undefined
    }
    if (this.#localGoAway) return refuse('goaway')
    if (this.#streams.size >= this.#options.maxStreams) return refuse('stream-limit')
    const listening = this.listenerCount('stream') > 0
    if (!listening && this.#backlog.length >= this.#options.maxAcceptBacklog) return refuse('accept-backlog')
    const stream = new MuxStream(id, this.#streamSession)
    this.#streams.set(id, stream)
    if (listening) this.#accept(stream)
    else this.#backlog.push(stream)
    return stream
  }

  #accept (stream: MuxStream): void {
    this.#streamsAcceptedTotal++
    stream.sendAck()
    this.emit('stream', stream)
  }

  #deliverBacklog (): void {
    while (this.#backlog.length > 0 && this.listenerCount('stream') > 0 && !this.#closed) {
      // Accepting sends the ACK, an answer like any other (the rest of the backlog stays unaccepted).
      const flood = this.#outbound.roomForAnswer('SYNs')
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
      const flood = this.#outbound.roomForAnswer('PINGs')
      if (flood !== undefined) throw flood
      this.#outbound.sendFrame(FRAME_TYPE.PING, FLAG.ACK, 0, h.length)
      return
    }
    if ((h.flags & FLAG.ACK) === FLAG.ACK) this.#pinger.handleAnswer(h.length)
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

  // --- teardown -------------------------------------------------------------------------------

  #protocolError (err: unknown): void {
    if (this.#closed) return
    const error = err instanceof MuxError
      ? err
      : new MuxError('SLK_ERR_MUX_PROTOCOL', `mux session failed while handling a frame: ${String(err)}`, { cause: err, closeReason: 'internal-error' })
    this.#parser.stop()
    this.#protocolErrors++
    this.#logger?.warn({ err: error }, 'mux peer misbehaved')
    if (!this.#localGoAway) {
      this.#localGoAway = true
      this.#outbound.sendFrame(FRAME_TYPE.GO_AWAY, 0, 0, GO_AWAY_CODE[error.closeReason ?? 'protocol-error'])
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

  /**
   * Tears everything down once. With `lingerMs` > 0 the transport is ended (queued frames such as a
   * GoAway still go out) and destroyed if it has not closed after `lingerMs`; with 0 it is destroyed now.
   */
  #teardown (err: Error | undefined, lingerMs: number): void {
    if (this.#closed) return
    this.#closed = true
    this.#closeError = err
    this.#parser.stop()
    this.#keepalive?.stop()
    this.#unanswered.clear()
    this.#pinger.rejectAll(new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'the mux session closed before the peer answered the ping', err === undefined ? undefined : { cause: err }))
    const streamErr = err ?? new MuxError('SLK_ERR_MUX_SESSION_CLOSED', 'the mux session closed')
    const streams = [...this.#streams.values()]
    // Nobody holds a stream still in the accept backlog, so nobody could handle an error event.
    const unaccepted = new Set(this.#backlog)
    this.#streams.clear()
    this.#backlog = []
    for (const stream of streams) stream.handleSessionEnd(unaccepted.has(stream) ? undefined : streamErr)
    this.#windowReserved = 0
    // After the streams: a writer woken here must find its stream already destroyed with `err`.
    // With linger what is queued (a GoAway) still goes out before the end.
    const transport = this.#transport
    const linger = lingerMs > 0 && !transport.destroyed
    this.#outbound.close(linger)
    this.#onStreamsEmpty?.()
    this.#logger?.debug({ err }, 'mux session closed')
    if (linger) {
      this.#transportCloseTimer = setTimeout(() => { transport.destroy() }, lingerMs)
      this.#transportCloseTimer.unref()
    } else {
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
    // 'error' stays handled: a late transport error must not become an uncaught exception.
    this.emit('close', this.#closeError)
  }

  #reserveWindow (bytes: number): number {
    const granted = Math.max(0, Math.min(bytes, this.#options.maxSessionWindowBytes - this.#windowReserved))
    this.#windowReserved += granted
    return granted
  }

  #streamEnded (stream: MuxStream): void {
    if (this.#streams.get(stream.id) !== stream) return
    this.#streams.delete(stream.id)
    this.#unanswered.delete(stream)
    this.#windowReserved -= stream.receiveWindowBytes - this.#options.initialStreamWindowBytes
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
