import { MuxError } from '../errors.js'
import { INITIAL_STREAM_WINDOW_BYTES, MAX_UINT32 } from './frame.js'

/** Limits and timers of a {@link MuxSession}; every field is optional. */
export interface MuxSessionOptions {
  /**
   * Receive window each stream starts with; above 256 KiB the extra is announced with the SYN/ACK
   * (spec "Flow Control"). Never below 256 KiB, which every yamux peer assumes.
   * @default 262144
   */
  initialStreamWindowBytes?: number
  /**
   * Ceiling of a stream's receive window when auto-tuning grows it towards the bandwidth-delay product.
   * @default 16777216
   */
  maxStreamWindowBytes?: number
  /**
   * Per-session memory budget: the sum over all streams of their receive window above the initial one.
   * @default 67108864
   */
  maxSessionWindowBytes?: number
  /**
   * Concurrent streams (both directions); an extra inbound SYN is refused with RST, an extra
   * `openStream()` throws `SLK_ERR_MUX_STREAM_LIMIT`.
   * @default 1024
   */
  maxStreams?: number
  /**
   * Inbound streams waiting for a `'stream'` listener; over it a new inbound stream is refused with RST.
   * @default 256
   */
  maxAcceptBacklog?: number
  /**
   * Interval between keepalive pings (or half `keepaliveTimeoutMs`, if that is shorter, so a live idle
   * peer always answers in time); 0 disables keepalive altogether.
   * @default 15000
   */
  keepaliveIntervalMs?: number
  /**
   * Nothing received from the peer for this long (no data, credit or pong: any byte proves it alive)
   * aborts the session with `SLK_ERR_MUX_KEEPALIVE_TIMEOUT`. Measured from the last bytes received, not
   * from a ping sent, so a dead peer is found exactly this long after it last spoke: keep it at 2 ×
   * `keepaliveIntervalMs` (the default) to find it within two intervals, and above the interval plus
   * the worst round trip so a live idle peer is never cut.
   * @default 30000
   */
  keepaliveTimeoutMs?: number
  /**
   * Largest DATA payload we send in one frame (inbound frames may be as large as the window we grant).
   * @default 262144
   */
  maxDataFrameBytes?: number
  /**
   * Default timeout of `ping()`.
   * @default 10000
   */
  pingTimeoutMs?: number
  /**
   * Default grace of `close()`: how long open streams may take to end before they are aborted, and
   * then how long the transport may take to close before it is destroyed.
   * @default 10000
   */
  closeGraceMs?: number
  /**
   * Grow a stream's window when half of it is read within two round trips (×2; within one, ×4), up to
   * `maxStreamWindowBytes` and the session's budget; a ping measures the RTT when the session starts
   * and on every keepalive.
   * @default true
   */
  windowAutoTuning?: boolean
  /**
   * Answers the peer asked for (PING ACKs, ACKs and refusing RSTs of its SYNs) that may wait in our
   * outbound queue while the transport is not draining; one more aborts the session with
   * `SLK_ERR_MUX_CONTROL_FLOOD`. Without it a peer that stops reading and keeps sending PINGs or SYNs
   * grows our memory without bound (cf. the HTTP/2 ping and reset floods, nghttp2's max outbound ACK).
   * Frames we originate (SYN, FIN, credit, our pings, GoAway) are bounded by the other limits and do not count.
   * @default 1024
   */
  maxQueuedControlFrames?: number
  /**
   * A stream we opened that gets no frame from the peer (ACK, data, FIN or RST) within this long is reset
   * and errors with `SLK_ERR_MUX_STREAM_OPEN_TIMEOUT` (hashicorp/yamux StreamOpenTimeout); 0 disables it.
   * @default 30000
   */
  streamOpenTimeoutMs?: number
  /**
   * How long the ACK of a peer's SYN may wait for the stream's first outgoing frame (data, credit, FIN)
   * so that both go in one message; 0 sends it when the stream is accepted. Keep it well below the
   * peer's stream open timeout.
   * @default 0
   */
  ackDelayMs?: number
}

/** Defaults of {@link MuxSessionOptions}. */
export const MUX_SESSION_DEFAULTS = Object.freeze({
  initialStreamWindowBytes: INITIAL_STREAM_WINDOW_BYTES,
  maxStreamWindowBytes: 16 * 1024 * 1024,
  maxSessionWindowBytes: 64 * 1024 * 1024,
  maxStreams: 1024,
  maxAcceptBacklog: 256,
  keepaliveIntervalMs: 15_000,
  keepaliveTimeoutMs: 30_000,
  maxDataFrameBytes: 256 * 1024,
  pingTimeoutMs: 10_000,
  closeGraceMs: 10_000,
  windowAutoTuning: true,
  maxQueuedControlFrames: 1024,
  streamOpenTimeoutMs: 30_000,
  ackDelayMs: 0,
} as const satisfies Required<MuxSessionOptions>)

/** Resolved options of a session. */
export type ResolvedMuxSessionOptions = { -readonly [K in keyof Required<MuxSessionOptions>]: Required<MuxSessionOptions>[K] }

function invalid (name: string, expected: string, value: unknown): MuxError {
  return new MuxError('SLK_ERR_MUX_INVALID_OPTION', `mux option ${name}: expected ${expected}, got ${String(value)}`)
}

function integer (name: string, value: number, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(name, `an integer from ${min} to ${max}`, value)
  }
}

/**
 * Merges `options` over {@link MUX_SESSION_DEFAULTS} and checks every field.
 * @throws MuxError `SLK_ERR_MUX_INVALID_OPTION` naming the first bad option.
 */
export function validateMuxSessionOptions (options: MuxSessionOptions = {}): ResolvedMuxSessionOptions {
  const o: ResolvedMuxSessionOptions = { ...MUX_SESSION_DEFAULTS }
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue
    if (!(key in MUX_SESSION_DEFAULTS)) throw invalid(key, 'a known option', 'an unknown option')
    Object.assign(o, { [key]: value })
  }
  integer('initialStreamWindowBytes', o.initialStreamWindowBytes, INITIAL_STREAM_WINDOW_BYTES, MAX_UINT32)
  integer('maxStreamWindowBytes', o.maxStreamWindowBytes, o.initialStreamWindowBytes, MAX_UINT32)
  integer('maxSessionWindowBytes', o.maxSessionWindowBytes, 0, Number.MAX_SAFE_INTEGER)
  integer('maxStreams', o.maxStreams, 1, 2 ** 31)
  integer('maxAcceptBacklog', o.maxAcceptBacklog, 0, 2 ** 31)
  integer('keepaliveIntervalMs', o.keepaliveIntervalMs, 0, 2 ** 31 - 1)
  integer('keepaliveTimeoutMs', o.keepaliveTimeoutMs, 1, 2 ** 31 - 1)
  integer('maxDataFrameBytes', o.maxDataFrameBytes, 1, 16 * 1024 * 1024)
  integer('pingTimeoutMs', o.pingTimeoutMs, 1, 2 ** 31 - 1)
  integer('closeGraceMs', o.closeGraceMs, 0, 2 ** 31 - 1)
  integer('maxQueuedControlFrames', o.maxQueuedControlFrames, 1, 2 ** 31)
  integer('streamOpenTimeoutMs', o.streamOpenTimeoutMs, 0, 2 ** 31 - 1)
  integer('ackDelayMs', o.ackDelayMs, 0, 2 ** 31 - 1)
  if (typeof o.windowAutoTuning !== 'boolean') throw invalid('windowAutoTuning', 'a boolean', o.windowAutoTuning)
  return o
}
