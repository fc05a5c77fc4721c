import { describe, expect, test } from 'vitest'
import fc from 'fast-check'
import { MuxError } from '../src/errors.js'
import { FLAG, FRAME_TYPE, HEADER_BYTES, encodeHeader } from '../src/mux/frame.js'
import type { FrameType } from '../src/mux/frame.js'
import { FrameParser } from '../src/mux/frame-parser.js'

interface Decoded { type: number, flags: number, streamId: number, length: number, payload: Buffer | undefined }

function collector (options?: { maxDataBytes?: number }): { parser: FrameParser, frames: Decoded[], pieces: Buffer[] } {
  const frames: Decoded[] = []
  const pieces: Buffer[] = []
  let parts: Buffer[] = []
  const parser = new FrameParser({
    onHeader: (h) => {
      if (h.type !== FRAME_TYPE.DATA) frames.push({ ...h, payload: undefined })
      parts = []
    },
    onPayload: (_h, piece) => {
      parts.push(piece)
      pieces.push(piece)
    },
    onDataEnd: (h) => { frames.push({ ...h, payload: Buffer.concat(parts) }) },
  }, options)
  return { parser, frames, pieces }
}

function frame (type: FrameType, flags: number, streamId: number, lengthOrPayload: number | Buffer): Buffer {
  if (typeof lengthOrPayload === 'number') return encodeHeader(type, flags, streamId, lengthOrPayload)
  return Buffer.concat([encodeHeader(type, flags, streamId, lengthOrPayload.length), lengthOrPayload])
}

const sample: Array<{ type: FrameType, flags: number, streamId: number, value: number | Buffer }> = [
  { type: FRAME_TYPE.WINDOW_UPDATE, flags: FLAG.SYN, streamId: 1, value: 0 },
  { type: FRAME_TYPE.DATA, flags: 0, streamId: 1, value: Buffer.from('hello, yamux') },
  { type: FRAME_TYPE.DATA, flags: FLAG.FIN, streamId: 1, value: Buffer.alloc(0) },
  { type: FRAME_TYPE.PING, flags: FLAG.SYN, streamId: 0, value: 0xdeadbeef },
  { type: FRAME_TYPE.DATA, flags: FLAG.ACK | FLAG.FIN, streamId: 2, value: Buffer.alloc(70_000, 0xab) },
  { type: FRAME_TYPE.WINDOW_UPDATE, flags: FLAG.ACK | FLAG.FIN, streamId: 2, value: 262_144 },
  { type: FRAME_TYPE.GO_AWAY, flags: 0, streamId: 0, value: 2 },
  { type: FRAME_TYPE.WINDOW_UPDATE, flags: FLAG.RST, streamId: 0xffff_fffe, value: 0 },
]
const wire = Buffer.concat(sample.map((f) => frame(f.type, f.flags, f.streamId, f.value)))

function expectSample (frames: Decoded[]): void {
  expect(frames).toHaveLength(sample.length)
  sample.forEach((f, i) => {
    const got = frames[i]
    expect(got).toMatchObject({ type: f.type, flags: f.flags, streamId: f.streamId })
    if (typeof f.value === 'number') expect(got?.length).toBe(f.value)
    else expect(got?.payload?.equals(f.value)).toBe(true)
  })
}

describe('FrameParser', () => {
  test('decodes all frames from one chunk, with payloads as views of the chunk', () => {
    const { parser, frames, pieces } = collector()
    parser.push(wire)
    expectSample(frames)
    expect(parser.midFrame).toBe(false)
    for (const piece of pieces) expect(piece.buffer).toBe(wire.buffer)
  })

  test('decodes the same frames fed one byte at a time', () => {
    const { parser, frames } = collector()
    for (let i = 0; i < wire.length; i++) parser.push(wire.subarray(i, i + 1))
    expectSample(frames)
  })

  test('decodes the same frames over any random chunking', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: wire.length }), { maxLength: 40 }), (cuts) => {
      const points = [...new Set(cuts)].sort((a, b) => a - b)
      const { parser, frames } = collector()
      let at = 0
      for (const p of [...points, wire.length]) {
        parser.push(wire.subarray(at, p))
        at = p
      }
      expectSample(frames)
    }), { numRuns: 300 })
  })

  test('decodes a header split at every offset', () => {
    const f = frame(FRAME_TYPE.DATA, FLAG.FIN, 7, Buffer.from('xyz'))
    for (let cut = 1; cut < f.length; cut++) {
      const { parser, frames } = collector()
      parser.push(f.subarray(0, cut))
      expect(parser.midFrame).toBe(true)
      parser.push(f.subarray(cut))
      expect(frames).toEqual([{ type: FRAME_TYPE.DATA, flags: FLAG.FIN, streamId: 7, length: 3, payload: Buffer.from('xyz') }])
    }
  })

  test('decodes 100,000 frames in one chunk with constant stack', () => {
    const n = 100_000
    const big = Buffer.allocUnsafe(n * (HEADER_BYTES + 1))
    for (let i = 0; i < n; i++) {
      const at = i * (HEADER_BYTES + 1)
      big.set(encodeHeader(FRAME_TYPE.DATA, 0, 1, 1), at)
      big[at + HEADER_BYTES] = i & 0xff
    }
    let count = 0
    let sum = 0
    const parser = new FrameParser({ onHeader: () => {}, onPayload: (_h, p) => { sum += p[0] ?? 0 }, onDataEnd: () => { count++ } })
    parser.push(big)
    expect(count).toBe(n)
    let expected = 0
    for (let i = 0; i < n; i++) expected += i & 0xff
    expect(sum).toBe(expected)
  })

  test('rejects a 4 GiB DATA length before any payload or allocation', () => {
    const { parser, frames, pieces } = collector({ maxDataBytes: 16 * 1024 * 1024 })
    const before = process.memoryUsage().arrayBuffers
    const err = ((): unknown => { try { parser.push(encodeHeader(FRAME_TYPE.DATA, 0, 1, 0xffff_ffff)); return undefined } catch (e) { return e } })()
    expect(err).toBeInstanceOf(MuxError)
    expect(err).toMatchObject({ code: 'SLK_ERR_MUX_FRAME_TOO_LARGE', closeReason: 'protocol-error' })
    expect((err as Error).message).toContain('4294967295')
    expect(frames).toHaveLength(0)
    expect(pieces).toHaveLength(0)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1024 * 1024)
  })

  test('lets the handler reject a DATA length (window check) before its payload', () => {
    let payloads = 0
    const parser = new FrameParser({
      onHeader: (h) => { if (h.length > 262_144) throw new MuxError('SLK_ERR_MUX_WINDOW_EXCEEDED', 'too big') },
      onPayload: () => { payloads++ },
      onDataEnd: () => {},
    })
    expect(() => { parser.push(encodeHeader(FRAME_TYPE.DATA, 0, 1, 300_000)) }).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_WINDOW_EXCEEDED' }))
    expect(payloads).toBe(0)
    expect(() => { parser.push(Buffer.alloc(1)) }).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_PROTOCOL' }))
  })

  test('rejects a bad version', () => {
    const h = encodeHeader(FRAME_TYPE.PING, FLAG.SYN, 0, 1)
    h[0] = 1
    const { parser } = collector()
    expect(() => { parser.push(h) }).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_VERSION' }))
  })

  test('rejects an unknown type, even when the header arrives split', () => {
    const h = encodeHeader(FRAME_TYPE.PING, 0, 0, 1)
    h[1] = 4
    const { parser } = collector()
    parser.push(h.subarray(0, 5))
    expect(() => { parser.push(h.subarray(5)) }).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_FRAME_TYPE' }))
  })

  test('stop() from a handler ignores the rest of the chunk', () => {
    let seen = 0
    const parser: FrameParser = new FrameParser({ onHeader: () => { seen++; parser.stop() }, onPayload: () => {}, onDataEnd: () => {} })
    parser.push(Buffer.concat([encodeHeader(FRAME_TYPE.PING, 0, 0, 1), encodeHeader(FRAME_TYPE.PING, 0, 0, 2)]))
    expect(seen).toBe(1)
  })
})

describe('validateMuxSessionOptions', () => {
  test('names the bad option with SLK_ERR_MUX_INVALID_OPTION', async () => {
    const { validateMuxSessionOptions, MUX_SESSION_DEFAULTS } = await import('../src/index.js')
    expect(validateMuxSessionOptions({})).toEqual(MUX_SESSION_DEFAULTS)
    expect(() => validateMuxSessionOptions({ initialStreamWindowBytes: 1000 })).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_INVALID_OPTION', message: expect.stringContaining('initialStreamWindowBytes') }))
    expect(() => validateMuxSessionOptions({ maxStreams: 0 })).toThrow(expect.objectContaining({ message: expect.stringContaining('maxStreams') }))
    expect(() => validateMuxSessionOptions({ maxStreamWindowBytes: 1024 })).toThrow(expect.objectContaining({ message: expect.stringContaining('maxStreamWindowBytes') }))
    expect(() => validateMuxSessionOptions({ maxQueuedControlFrames: 0 })).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_INVALID_OPTION', message: 'mux option maxQueuedControlFrames: expected an integer from 1 to 2147483648, got 0' }))
    expect(() => validateMuxSessionOptions({ streamOpenTimeoutMs: -1 })).toThrow(expect.objectContaining({ code: 'SLK_ERR_MUX_INVALID_OPTION', message: expect.stringContaining('streamOpenTimeoutMs') }))
    expect(validateMuxSessionOptions({ streamOpenTimeoutMs: 0 }).streamOpenTimeoutMs).toBe(0)
    expect(MUX_SESSION_DEFAULTS).toMatchObject({ maxQueuedControlFrames: 1024, streamOpenTimeoutMs: 30_000 })
  })
})
