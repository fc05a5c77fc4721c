/** The bulk workload's request: one mode byte and a uint64 BE byte count (see `upstream.ts`). */
export const BULK_HEADER_BYTES = 9

/** `U`: the client uploads to the sink; `D`: the source sends to the client. */
export const BULK_MODE = { upload: 0x55, download: 0x44 } as const
export type BulkMode = typeof BULK_MODE[keyof typeof BULK_MODE]

/** What the sink answers once it has every uploaded byte. */
export const BULK_ACK = Buffer.from('k')

export interface BulkRequest {
  mode: BulkMode
  bytes: number
}

/** Encodes a bulk request. */
export function encodeBulkHeader (request: BulkRequest): Buffer {
  const header = Buffer.alloc(BULK_HEADER_BYTES)
  header.writeUInt8(request.mode, 0)
  header.writeBigUInt64BE(BigInt(request.bytes), 1)
  return header
}

/**
 * Decodes the first {@link BULK_HEADER_BYTES} of `header`.
 * @throws RangeError on an unknown mode or a count beyond Number.MAX_SAFE_INTEGER
 */
export function parseBulkHeader (header: Buffer): BulkRequest {
  const mode = header.readUInt8(0)
  if (mode !== BULK_MODE.upload && mode !== BULK_MODE.download) throw new RangeError(`bulk header: unknown mode 0x${mode.toString(16)}`)
  const bytes = header.readBigUInt64BE(1)
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`bulk header: byte count ${bytes} too large`)
  return { mode, bytes: Number(bytes) }
}
