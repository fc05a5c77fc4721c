import type { Writable } from 'node:stream'

const PAYLOAD = Buffer.alloc(256 * 1024, 0x5a)

/** Writes `bytes` filler bytes honouring backpressure; ends the writable afterwards when `end` is set. */
export function writeBytes (sink: Writable, bytes: number, options: { end: boolean }): void {
  let remaining = bytes
  const pump = (): void => {
    while (remaining > 0) {
      const chunk = remaining >= PAYLOAD.length ? PAYLOAD : PAYLOAD.subarray(0, remaining)
      remaining -= chunk.length
      if (!sink.write(chunk)) {
        sink.once('drain', pump)
        return
      }
    }
    if (options.end) sink.end()
  }
  pump()
}
