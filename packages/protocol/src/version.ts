/** The WebSocket subprotocol a v1 peer offers and accepts (`Sec-WebSocket-Protocol`). */
export const PROTOCOL_NAME = 'spokelink.v1'

/** The protocol version carried in the hello on the control stream. */
export const PROTOCOL_VERSION = 1

/** The path the exit-node accepts agent WebSockets on. */
export const CONNECT_PATH = '/connect'
