import type { Duplex, Readable, Writable } from 'node:stream'
import { ProtocolError } from './errors.js'
import { encodeFramedJson, readFramedJsonThen } from './framed-json.js'
import { isUpstreamName, printableValue } from './messages.js'
import { abortableRead, readExactlyThen } from './read-exactly.js'
import { readWithin } from './read-within.js'
import { relay } from './relay.js'
import { SYSTEM_CLOCK } from './mux/clock.js'
import type { MuxClock } from './mux/clock.js'

/*
 * The data-stream handshake, both ends, in one place (DESIGN "Wire protocol"). Hub-service streams
 * (README "Remote write through the tunnel") are the same handshake the other way round: the agent opens
 * with `{hubService}`, the exit-node dials the address its spokes file names and answers the status byte.
 *
 *   exit-node (opener)                              agent (acceptor)
 *   client's first bytes, or firstBytesHoldMs
 *   SYN + {upstream} header + client bytes  ───▶    header read within headerTimeoutMs
 *                                                   dial the upstream
 *   status read within statusTimeoutMs      ◀───    ACK + status byte + upstream's first bytes
 *                                                   (status alone after okStatusHoldMs, ACK alone after ackDelayMs)
 *
 * The timers exist so that a request/response costs one tunnel message each way, and none of them can
 * delay a connection by more than its own hold.
 */

/** The first message of every data stream: which upstream the agent should dial. */
export interface StreamHeader {
  upstream: string
}

/** The first message of a stream the agent opens to reach a hub service (the spokes file's `hubServices`). */
export interface HubStreamHeader {
  hubService: string
}

/** The one byte the acceptor answers a stream header with. */
export const STREAM_STATUS = {
  OK: 0,
  UNKNOWN_UPSTREAM: 1,
  DIAL_FAILED: 2,
  /** Hub streams: the spoke may not reach this hub service (no `hubServices` entry), or the exit-node has none. */
  NOT_ALLOWED: 3,
  /** Hub streams: the spoke already has `maxConnections` streams to this hub service. */
  BUSY: 4,
} as const
/** A value of {@link STREAM_STATUS}. */
export type StreamStatus = typeof STREAM_STATUS[keyof typeof STREAM_STATUS]

/** The status values that refuse a stream. */
export type StreamRefusal = Exclude<StreamStatus, typeof STREAM_STATUS.OK>

/** Limits and holds of the handshake; README "Limits" and "How a new connection crosses the tunnel" quote them. */
export const DATA_STREAM_DEFAULTS = {
  /** Largest `{upstream}` header the acceptor reads (the same limit as the hello's). */
  maxHeaderBytes: 16_384,
  /** Largest `{reason}` after a refusing status byte. */
  maxReasonBytes: 1024,
  /**
   * How long a new connection waits for its client's first bytes, so they ride with the SYN. Clients
   * that speak first send within microseconds; servers that speak first (SMTP, MySQL) pay this once.
   */
  firstBytesHoldMs: 2,
  /** How long the OK status waits for the upstream's first bytes to travel with. */
  okStatusHoldMs: 500,
  /**
   * How long the acceptor's ACK waits for the stream's first frame (the status). Above `okStatusHoldMs`,
   * so the ACK always rides with the status; the opener's open timeout (10 s) is far above both.
   */
  ackDelayMs: 1000,
} as const

/** The mux options an acceptor of data streams runs with: the delayed-ACK policy above. */
export const DATA_STREAM_ACCEPTOR_MUX_OPTIONS = { ackDelayMs: DATA_STREAM_DEFAULTS.ackDelayMs } as const

function invalidHeader (): ProtocolError {
  return new ProtocolError('SLK_ERR_PROTO_HEADER_INVALID', 'peer sent an invalid stream header')
}

/**
 * Validates a data stream header read from the wire.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_INVALID
 */
export function parseStreamHeader (value: unknown): StreamHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !('upstream' in value)) throw invalidHeader()
  const { upstream } = value
  if (typeof upstream !== 'string' || !isUpstreamName(upstream)) throw invalidHeader()
  return { upstream }
}

/**
 * Validates a hub stream header read from the wire.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_INVALID
 */
export function parseHubStreamHeader (value: unknown): HubStreamHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !('hubService' in value)) throw invalidHeader()
  const { hubService } = value
  if (typeof hubService !== 'string' || !isUpstreamName(hubService)) throw invalidHeader()
  return { hubService }
}

/** Writes the acceptor's status byte; a refusal is followed by a length-prefixed `{reason}`. */
export function writeStreamStatus (stream: Writable, status: StreamStatus, reason?: string): void {
  if (status === STREAM_STATUS.OK) {
    stream.write(Buffer.of(status))
    return
  }
  stream.write(Buffer.concat([Buffer.of(status), encodeFramedJson({ reason: reason ?? 'refused' })]))
}

/**
 * Reads the acceptor's answer to a stream header: the agent's to a data stream, or the exit-node's to a hub
 * stream (`options.hub`).
 * @throws ProtocolError SLK_ERR_PROTO_UPSTREAM_REFUSED with the agent's reason (SLK_ERR_PROTO_HUB_SERVICE_REFUSED
 * with the exit-node's, for a hub stream), SLK_ERR_PROTO_CLOSED
 */
export async function readStreamStatus (stream: Readable, options: { signal?: AbortSignal, hub?: boolean } = {}): Promise<void> {
  await abortableRead(options.signal, (done) => readStreamStatusThen(stream, options.hub === true, done))
}

/**
 * The callback core of {@link readStreamStatus}: `done` once, with nothing for OK, with the refusal, or with
 * SLK_ERR_PROTO_CLOSED. Returns a function that stops waiting without calling `done`.
 */
function readStreamStatusThen (stream: Readable, hub: boolean, done: (err: Error | undefined, value: undefined) => void): () => void {
  let stopReason: (() => void) | undefined
  const stopStatus = readExactlyThen(stream, 1, (err, status) => {
    if (err !== undefined || status[0] === STREAM_STATUS.OK) {
      done(err, undefined)
      return
    }
    stopReason = readFramedJsonThen(stream, DATA_STREAM_DEFAULTS.maxReasonBytes, (reasonErr, body) => {
      done(reasonErr ?? refusalError(body, hub), undefined)
    })
  })
  return () => {
    stopStatus()
    stopReason?.()
  }
}

/** The opener's error for a refusing status followed by `body` (its `{reason}`). */
function refusalError (body: unknown, hub: boolean): ProtocolError {
  const reason = typeof body === 'object' && body !== null && 'reason' in body ? printableValue(body.reason) : 'no reason given'
  if (hub) return new ProtocolError('SLK_ERR_PROTO_HUB_SERVICE_REFUSED', `exit-node refused the hub stream: ${reason}`)
  return new ProtocolError('SLK_ERR_PROTO_UPSTREAM_REFUSED', `agent refused the stream: ${reason}`)
}

/**
 * Resolves once `client` has bytes to read, has ended or closed, or `holdMs` passed, whichever is first;
 * nothing is consumed. A client that speaks first (HTTP) then opens its stream with the SYN, the header
 * and its request in one message; one that waits for the server is held `holdMs` at most.
 */
export async function waitForFirstBytes (client: Readable, holdMs: number = DATA_STREAM_DEFAULTS.firstBytesHoldMs, clock: MuxClock = SYSTEM_CLOCK): Promise<void> {
  if (client.readableLength > 0 || client.readableEnded || client.destroyed) return
  await new Promise<void>((resolve) => {
    const done = (): void => {
      cancel()
      client.off('readable', done)
      client.off('close', done)
      resolve()
    }
    const cancel = clock.setTimeout(done, holdMs)
    client.once('readable', done)
    client.once('close', done)
  })
}

/** Options of {@link openDataStream}. */
export interface OpenDataStreamOptions {
  /** The upstream the agent should dial. */
  upstream: string
  /** How long the agent may take to dial and answer; past it the stream is destroyed with `statusTimeoutError()`. */
  statusTimeoutMs: number
  /** The error a late status destroys the stream with (the exit-node's `SLK_ERR_EXIT_STREAM_OPEN_TIMEOUT`). */
  statusTimeoutError: () => Error
  /** @default SYSTEM_CLOCK */
  clock?: MuxClock
}

/**
 * The opener's end: sends the header on a freshly opened `stream` and relays `client` over it. The
 * client's bytes follow the header at once (within the stream window) instead of waiting for the
 * agent's status byte, so a new connection costs one tunnel round trip, not two; the agent's bytes
 * reach the client only after an OK status.
 *
 * Resolves like {@link relay}: `undefined` after a clean close both ways, else the first failure
 * (`SLK_ERR_PROTO_UPSTREAM_REFUSED` for a refusal). It never rejects.
 */
export function openDataStream (stream: Duplex, client: Duplex, options: OpenDataStreamOptions): Promise<Error | undefined> {
  return openWithHeader(stream, client, { upstream: options.upstream } satisfies StreamHeader, false, options)
}

/** Options of {@link openHubStream}. */
export interface OpenHubStreamOptions {
  /** The hub service (a `hubServices` name of the spoke) the exit-node should dial. */
  hubService: string
  /** How long the exit-node may take to dial and answer; past it the stream is destroyed with `statusTimeoutError()`. */
  statusTimeoutMs: number
  /** The error a late status destroys the stream with. */
  statusTimeoutError: () => Error
  /** @default SYSTEM_CLOCK */
  clock?: MuxClock
}

/**
 * The agent's end of a hub stream: {@link openDataStream} the other way round. The local client's bytes follow
 * the `{hubService}` header at once; the hub's bytes reach it only after the exit-node's OK. Resolves like
 * {@link relay} (`SLK_ERR_PROTO_HUB_SERVICE_REFUSED` for a refusal); it never rejects.
 */
export function openHubStream (stream: Duplex, client: Duplex, options: OpenHubStreamOptions): Promise<Error | undefined> {
  return openWithHeader(stream, client, { hubService: options.hubService } satisfies HubStreamHeader, true, options)
}

function openWithHeader (stream: Duplex, client: Duplex, header: StreamHeader | HubStreamHeader, hub: boolean,
  options: { statusTimeoutMs: number, statusTimeoutError: () => Error, clock?: MuxClock | undefined }): Promise<Error | undefined> {
  stream.write(encodeFramedJson(header))
  const { statusTimeoutMs, statusTimeoutError, clock } = options
  return relay(client, stream, {
    streamToSocketDirect: true,
    beforeBToA: (done) => {
      readWithin(stream, statusTimeoutMs, statusTimeoutError, clock ?? SYSTEM_CLOCK, (read) => readStreamStatusThen(stream, hub, read), (err) => { done(err) })
    },
  })
}

/** Options of {@link acceptDataStream}. */
export interface AcceptDataStreamOptions {
  /** The header must arrive within this; past it the stream is destroyed with `headerTimeoutError()`. */
  headerTimeoutMs: number
  /** The error a late header destroys the stream with (the agent's `SLK_ERR_AGENT_STREAM_HEADER`). */
  headerTimeoutError: () => Error
  /** @default DATA_STREAM_DEFAULTS.okStatusHoldMs */
  okStatusHoldMs?: number
  /** @default SYSTEM_CLOCK */
  clock?: MuxClock
}

/** A data stream whose header was read: answer it once, with {@link refuse} or {@link relay}. */
export interface AcceptedDataStream {
  /** The upstream the opener asked for (a valid name, not yet checked against any allow-list). */
  readonly upstream: string
  /**
   * Answers OK at once and hands the stream over: from here its errors are the caller's to handle
   * (the agent's HTTP policy proxy, which reads requests off the stream itself).
   */
  accept: () => void
  /** Answers with a refusing status and its reason, then ends the stream. */
  refuse: (status: StreamRefusal, reason: string) => void
  /**
   * Answers OK and relays `upstream` over the stream. The status byte waits for the upstream's first
   * bytes (or its end), so status and answer reach the opener in one message; a silent upstream gets its
   * status after `okStatusHoldMs`. Resolves like {@link relay}.
   */
  relay: (upstream: Duplex) => Promise<Error | undefined>
}

/**
 * The acceptor's end: reads and validates the stream header. On failure the stream is destroyed (the
 * mux sends RST) and the error is rethrown for the caller to log.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_TOO_LARGE, SLK_ERR_PROTO_HEADER_INVALID, SLK_ERR_PROTO_CLOSED, or `headerTimeoutError()`
 */
export async function acceptDataStream (stream: Duplex, options: AcceptDataStreamOptions): Promise<AcceptedDataStream> {
  const { header, ...answer } = await acceptWithHeader(stream, options, parseStreamHeader)
  return { upstream: header.upstream, ...answer }
}

/**
 * A hub stream whose header was read: answer it once, with {@link AcceptedHubStream.refuse}, {@link AcceptedHubStream.relay}
 * or {@link AcceptedHubStream.accept} (the exit-node's HTTP policy proxy for a hub service with an `allow` list).
 */
export interface AcceptedHubStream extends Omit<AcceptedDataStream, 'upstream'> {
  /** The hub service the agent asked for (a valid name, not yet checked against the spokes file). */
  readonly hubService: string
}

/**
 * The exit-node's end of a hub stream: reads and validates the `{hubService}` header like {@link acceptDataStream}.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_TOO_LARGE, SLK_ERR_PROTO_HEADER_INVALID, SLK_ERR_PROTO_CLOSED, or `headerTimeoutError()`
 */
export async function acceptHubStream (stream: Duplex, options: AcceptDataStreamOptions): Promise<AcceptedHubStream> {
  const { header, accept, refuse, relay: relayStream } = await acceptWithHeader(stream, options, parseHubStreamHeader)
  return { hubService: header.hubService, accept, refuse, relay: relayStream }
}

async function acceptWithHeader<T> (stream: Duplex, options: AcceptDataStreamOptions, parse: (value: unknown) => T): Promise<Omit<AcceptedDataStream, 'upstream'> & { header: T }> {
  const clock = options.clock ?? SYSTEM_CLOCK
  const okStatusHoldMs = options.okStatusHoldMs ?? DATA_STREAM_DEFAULTS.okStatusHoldMs
  // Until relay() owns the stream, a reset from the opener must not become an uncaught 'error'.
  const ignoreUntilRelayed = (): void => {}
  stream.on('error', ignoreUntilRelayed)
  let header: T
  try {
    header = parse(await new Promise<unknown>((resolve, reject) => {
      readWithin(stream, options.headerTimeoutMs, options.headerTimeoutError, clock,
        (read) => readFramedJsonThen(stream, DATA_STREAM_DEFAULTS.maxHeaderBytes, read),
        (err, value) => { if (err === undefined) resolve(value); else reject(err) })
    }))
  } catch (err) {
    stream.destroy()
    throw err
  }
  return {
    header,
    accept: () => {
      writeStreamStatus(stream, STREAM_STATUS.OK)
      stream.off('error', ignoreUntilRelayed)
    },
    refuse: (status, reason) => {
      writeStreamStatus(stream, status, reason)
      stream.end()
    },
    relay: async (socket) => {
      sendOkStatusWithFirstBytes(stream, socket, okStatusHoldMs, clock)
      stream.off('error', ignoreUntilRelayed)
      return relay(stream, socket)
    },
  }
}

/** Must run before the relay's listeners are added: its 'data' listener has to see the first chunk first. */
function sendOkStatusWithFirstBytes (stream: Duplex, upstream: Duplex, holdMs: number, clock: MuxClock): void {
  const send = (): void => {
    cancel()
    writeStreamStatus(stream, STREAM_STATUS.OK)
  }
  const cancel = (): void => {
    cancelTimer()
    upstream.off('data', send)
    upstream.off('end', send)
    stream.off('close', cancel)
  }
  const cancelTimer = clock.setTimeout(send, holdMs)
  upstream.once('data', send)
  upstream.once('end', send)
  stream.once('close', cancel)
}
