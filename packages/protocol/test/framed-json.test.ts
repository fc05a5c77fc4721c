import { PassThrough } from 'node:stream'
import { describe, expect, test } from 'vitest'
import fc from 'fast-check'
import {
  STREAM_STATUS,
  encodeFramedJson,
  parseHello,
  parseStreamHeader,
  parseWelcome,
  readFramedJson,
  readStreamStatus,
  writeStreamStatus,
  PROTOCOL_VERSION,
} from '@spokelink/protocol'

function feed (chunks: Buffer[]): PassThrough {
  const stream = new PassThrough()
  for (const chunk of chunks) stream.write(chunk)
  return stream
}

describe('framed JSON', () => {
  test('round-trips under any chunking and leaves the following bytes unread', async () => {
    await fc.assert(fc.asyncProperty(
      fc.dictionary(fc.string(), fc.string()),
      fc.uint8Array({ maxLength: 64 }),
      fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 20 }),
      async (value, trailer, cuts) => {
        const bytes = Buffer.concat([encodeFramedJson(value), Buffer.from(trailer)])
        const chunks: Buffer[] = []
        let offset = 0
        for (let i = 0; offset < bytes.length; i++) {
          const size = cuts[i % cuts.length] ?? 1
          chunks.push(bytes.subarray(offset, offset + size))
          offset += size
        }
        const stream = feed(chunks)
        stream.end()
        expect(await readFramedJson(stream)).toEqual(value)
        const rest: Buffer[] = []
        for await (const chunk of stream) rest.push(chunk as Buffer)
        expect(Buffer.concat(rest)).toEqual(Buffer.from(trailer))
      }
    ), { numRuns: 200 })
  })

  test('a length above the limit fails before the body is read', async () => {
    const prefix = Buffer.alloc(4)
    prefix.writeUInt32BE(0xffffffff)
    await expect(readFramedJson(feed([prefix]), { maxBytes: 1024 })).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_HEADER_TOO_LARGE' })
  })

  test('a body that is not JSON is SLK_ERR_PROTO_HEADER_INVALID', async () => {
    const body = Buffer.from('{nope')
    const prefix = Buffer.alloc(4)
    prefix.writeUInt32BE(body.length)
    await expect(readFramedJson(feed([prefix, body]))).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_HEADER_INVALID' })
  })

  test('a stream that ends early is SLK_ERR_PROTO_CLOSED', async () => {
    const stream = feed([Buffer.from([0, 0, 0, 9, 0x7b])])
    stream.end()
    await expect(readFramedJson(stream)).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_CLOSED' })
  })

  test('an abort signal ends a read that waits forever', async () => {
    await expect(readFramedJson(new PassThrough(), { signal: AbortSignal.timeout(20) })).rejects.toThrow()
  })
})

describe('messages', () => {
  test('a hello of another version names both versions', () => {
    expect(() => parseHello({ version: 2, agent: 'a', upstreams: [] })).toThrow(/version 2.*version 1/)
    expect(() => parseHello({ version: 2, agent: 'a', upstreams: [] })).toThrowError(expect.objectContaining({ code: 'SLK_ERR_PROTO_VERSION_MISMATCH' }) as Error)
  })

  test('hello validation rejects bad upstream names and label values', () => {
    expect(parseHello({ version: PROTOCOL_VERSION, agent: 'pod-1', upstreams: ['prometheus'], labels: { env: 'prod' } }))
      .toEqual({ version: PROTOCOL_VERSION, agent: 'pod-1', upstreams: ['prometheus'], labels: { env: 'prod' } })
    for (const bad of [{ upstreams: ['Prom etheus'] }, { upstreams: ['10.0.0.1:9090'] }, { labels: { a: 1 } }, { agent: 7 }]) {
      expect(() => parseHello({ version: PROTOCOL_VERSION, agent: 'a', upstreams: [], ...bad })).toThrowError(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }) as Error)
    }
  })

  test('a stream header names an upstream, never an address', () => {
    expect(parseStreamHeader({ upstream: 'prometheus' })).toEqual({ upstream: 'prometheus' })
    expect(() => parseStreamHeader({ upstream: 'evil.example.com:22' })).toThrowError(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }) as Error)
  })

  test('welcome: ok and refusal', () => {
    expect(parseWelcome({ ok: true, spoke: 's', ports: [{ upstream: 'prometheus', host: '0.0.0.0', port: 19090 }] }).ok).toBe(true)
    expect(parseWelcome({ ok: false, code: 'X', error: 'no' })).toEqual({ ok: false, code: 'X', error: 'no' })
  })
})

describe('stream status byte', () => {
  test('ok is one byte and leaves the data after it', async () => {
    const stream = new PassThrough()
    writeStreamStatus(stream, STREAM_STATUS.OK)
    stream.write('payload')
    await readStreamStatus(stream)
    expect(String(stream.read())).toBe('payload')
  })

  test('a refusal carries the agent reason', async () => {
    const stream = new PassThrough()
    writeStreamStatus(stream, STREAM_STATUS.UNKNOWN_UPSTREAM, 'upstream "x" is not offered by this agent')
    await expect(readStreamStatus(stream)).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_UPSTREAM_REFUSED', message: 'agent refused the stream: upstream "x" is not offered by this agent' })
  })
})
