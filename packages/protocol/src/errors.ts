import { SpokelinkError } from '@spokelink/errors'

/** Codes of errors raised by the multiplexer; each names what the peer or the caller did. */
export const MUX_ERROR_CODES = [
  'SLK_ERR_MUX_PROTOCOL',
  'SLK_ERR_MUX_VERSION',
  'SLK_ERR_MUX_FRAME_TYPE',
  'SLK_ERR_MUX_FRAME_TOO_LARGE',
  'SLK_ERR_MUX_WINDOW_EXCEEDED',
  'SLK_ERR_MUX_UNKNOWN_STREAM',
  'SLK_ERR_MUX_DUPLICATE_STREAM',
  'SLK_ERR_MUX_STREAM_RESET',
  'SLK_ERR_MUX_STREAM_LIMIT',
  'SLK_ERR_MUX_SESSION_CLOSED',
  'SLK_ERR_MUX_GO_AWAY',
  'SLK_ERR_MUX_KEEPALIVE_TIMEOUT',
  'SLK_ERR_MUX_TRANSPORT_CLOSED',
  'SLK_ERR_MUX_INVALID_OPTION',
  'SLK_ERR_MUX_PING_TIMEOUT',
  'SLK_ERR_MUX_TRANSPORT_MESSAGE',
  'SLK_ERR_MUX_CONTROL_FLOOD',
  'SLK_ERR_MUX_STREAM_OPEN_TIMEOUT',
] as const
/** A value of {@link MUX_ERROR_CODES}. */
export type MuxErrorCode = typeof MUX_ERROR_CODES[number]

/** What a yamux GoAway frame says about why a session ends (hashicorp spec: 0 normal, 1 protocol error, 2 internal error). */
export type GoAwayReason = 'normal' | 'protocol-error' | 'internal-error'

/**
 * A multiplexer error. `closeReason` is the GoAway reason sent to the peer when this error closes the session.
 */
export class MuxError extends SpokelinkError<MuxErrorCode> {
  override name = 'MuxError'
  readonly closeReason: GoAwayReason | undefined
  constructor (code: MuxErrorCode, message: string, options?: ErrorOptions & { closeReason?: GoAwayReason }) {
    super(code, message, options)
    this.closeReason = options?.closeReason
  }
}

/** Codes of errors raised by the spokelink protocol layered over the mux (hello, stream header, WebSocket). */
export const PROTOCOL_ERROR_CODES = [
  'SLK_ERR_PROTO_VERSION_MISMATCH',
  'SLK_ERR_PROTO_HEADER_TOO_LARGE',
  'SLK_ERR_PROTO_HEADER_INVALID',
  'SLK_ERR_PROTO_UPSTREAM_REFUSED',
  'SLK_ERR_PROTO_HUB_SERVICE_REFUSED',
  'SLK_ERR_PROTO_CLOSED',
] as const
/** A value of {@link PROTOCOL_ERROR_CODES}. */
export type ProtocolErrorCode = typeof PROTOCOL_ERROR_CODES[number]

/** A spokelink protocol error (hello, stream header, WebSocket). */
export class ProtocolError extends SpokelinkError<ProtocolErrorCode> {
  override name = 'ProtocolError'
}
