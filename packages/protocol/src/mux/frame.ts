/** Size of every yamux frame header (hashicorp spec, "Framing"). */
export const HEADER_BYTES = 12

/** The only protocol version the spec defines. */
export const YAMUX_VERSION = 0

/** Frame types (spec "Type field"). */
export const FRAME_TYPE = { DATA: 0, WINDOW_UPDATE: 1, PING: 2, GO_AWAY: 3 } as const
/** A yamux frame type value. */
export type FrameType = typeof FRAME_TYPE[keyof typeof FRAME_TYPE]

/** Frame flags; they combine as a bitmask (spec "Flag field"). */
export const FLAG = { SYN: 1, ACK: 2, FIN: 4, RST: 8 } as const

/** GoAway codes carried in the length field (spec "GoAway"). */
export const GO_AWAY_CODE = { normal: 0, 'protocol-error': 1, 'internal-error': 2 } as const

/** The initial stream window every yamux peer assumes (spec "Flow Control"). */
export const INITIAL_STREAM_WINDOW_BYTES = 256 * 1024

/** Largest value the 32-bit length field can hold. */
export const MAX_UINT32 = 0xffff_ffff

/** A decoded frame header; for DATA `length` is the payload size, otherwise it is the frame's value. */
export interface FrameHeader {
  type: FrameType
  flags: number
  streamId: number
  length: number
}

/** Encodes a frame header into a fresh 12-byte buffer (from Node's small-buffer pool). */
export function encodeHeader (type: FrameType, flags: number, streamId: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES)
  buf[0] = YAMUX_VERSION
  buf[1] = type
  buf.writeUInt16BE(flags, 2)
  buf.writeUInt32BE(streamId >>> 0, 4)
  buf.writeUInt32BE(length >>> 0, 8)
  return buf
}

/** Names a frame type for error messages. */
export function frameTypeName (type: number): string {
  switch (type) {
    case FRAME_TYPE.DATA: return 'DATA'
    case FRAME_TYPE.WINDOW_UPDATE: return 'WINDOW_UPDATE'
    case FRAME_TYPE.PING: return 'PING'
    case FRAME_TYPE.GO_AWAY: return 'GO_AWAY'
    default: return `type ${type}`
  }
}
