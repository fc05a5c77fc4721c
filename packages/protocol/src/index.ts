/**
 * @packageDocumentation
 * The spokelink wire: our yamux (`MuxSession`), the WebSocket⇄Duplex adapter, the hello/welcome
 * messages on the control stream, the data stream header and status byte, and typed protocol errors.
 *
 * @example
 * ```ts
 * const session = createMuxSession(createWebSocketDuplex(ws), 'client')
 * const control = session.openStream()
 * writeFramedJson(control, hello)
 * const welcome = parseWelcome(await readFramedJson(control))
 * ```
 */
export { MuxError, ProtocolError, MUX_ERROR_CODES, PROTOCOL_ERROR_CODES } from './errors.js'
export { CLOSE_CODE, closeCodeName } from './close-codes.js'
export type { CloseCode } from './close-codes.js'
export type { MuxErrorCode, ProtocolErrorCode, GoAwayReason } from './errors.js'
export { PROTOCOL_NAME, PROTOCOL_VERSION, CONNECT_PATH } from './version.js'
export { readExactly } from './read-exactly.js'
export type { ReadExactlyOptions } from './read-exactly.js'
export { encodeFramedJson, writeFramedJson, readFramedJson, FRAMED_JSON_DEFAULTS, FRAMED_JSON_PREFIX_BYTES } from './framed-json.js'
export type { ReadFramedJsonOptions } from './framed-json.js'
export { isUpstreamName, parseHello, parseWelcome, MAX_HUB_SERVICES } from './messages.js'
export type { Hello, Welcome, GrantedPort } from './messages.js'
export {
  STREAM_STATUS,
  DATA_STREAM_DEFAULTS,
  DATA_STREAM_ACCEPTOR_MUX_OPTIONS,
  parseStreamHeader,
  parseHubStreamHeader,
  writeStreamStatus,
  readStreamStatus,
  waitForFirstBytes,
  openDataStream,
  acceptDataStream,
  openHubStream,
  acceptHubStream,
} from './data-stream.js'
export type {
  StreamHeader, HubStreamHeader, StreamStatus, StreamRefusal, OpenDataStreamOptions, OpenHubStreamOptions,
  AcceptDataStreamOptions, AcceptedDataStream, AcceptedHubStream,
} from './data-stream.js'
export { CERTIFICATE_MESSAGE_MAX_BYTES, parseCertificateRequest, parseCertificateResponse } from './certificate-messages.js'
export type { CertificateRequest, CertificateResponse } from './certificate-messages.js'
// mux and ws-duplex exports follow
export { createMuxSession, MuxSession } from './mux/mux-session.js'
export type { MuxStats, MuxSessionDeps, MuxLogger, MuxPingOptions, MuxCloseOptions } from './mux/mux-session.js'
export { MuxStream } from './mux/mux-stream.js'
export type { MuxClock, CancelTimer } from './mux/clock.js'
export { MUX_SESSION_DEFAULTS, validateMuxSessionOptions } from './mux/options.js'
export type { MuxSessionOptions } from './mux/options.js'
export { generateZeroMask } from './zero-mask.js'
export { createWebSocketDuplex, WEBSOCKET_DUPLEX_DEFAULTS } from './ws-duplex.js'
export type { WebSocketDuplexOptions } from './ws-duplex.js'
export { ReadBufferPool, READ_BUFFER_POOL_DEFAULTS, releaseWritten, sharedReadBufferPool } from './read-buffer-pool.js'
export type { ReadBufferPoolOptions } from './read-buffer-pool.js'
export { relay } from './relay.js'
export type { RelayOptions } from './relay.js'
