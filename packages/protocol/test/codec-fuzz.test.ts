/**
 * Fuzzing of everything the protocol package parses from a peer: the length-prefixed JSON reader, the hello,
 * welcome and stream-header validators, the stream status reader and the yamux frame parser. For any input the
 * outcome is a value or an error whose `code` starts with `SLK_ERR_`; nothing else is thrown and nothing hangs
 * (async reads run against a real stream with a deadline whose expiry is not an `SLK_ERR_` error).
 */
import { PassThrough } from 'node:stream'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { ProtocolError } from '../src/errors.js'
import { encodeFramedJson, readFramedJson } from '../src/framed-json.js'
import { PROTOCOL_VERSION } from '../src/version.js'
import { parseHello, parseWelcome } from '../src/messages.js'
import { parseStreamHeader, readStreamStatus } from '../src/data-stream.js'
import { FRAME_TYPE, HEADER_BYTES, encodeHeader } from '../src/mux/frame.js'
import type { FrameType } from '../src/mux/frame.js'
import { FrameParser } from '../src/mux/frame-parser.js'

/** Runs per property; the whole file stays within a few seconds. */
const RUNS = 2000
/** Deadline of one async read; only a hang gets near it. */
const READ_DEADLINE_MS = 2000

/** The error's code when it is one of ours; fails the test with the error itself otherwise. */
function typedCode (err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : ''
  if (!code.startsWith('SLK_ERR_')) throw new Error(`untyped error escaped: ${String(err)}`, { cause: err })
  return code
}

function outcomeOf (parse: () => unknown): string {
  try {
    parse()
    return 'ok'
  } catch (err) {
    return typedCode(err)
  }
}

/** A stream fed `chunks` then ended, as a socket would deliver them. */
function streamOf (chunks: Uint8Array[]): PassThrough {
  const stream = new PassThrough()
  for (const chunk of chunks) stream.write(Buffer.from(chunk))
  stream.end()
  return stream
}

async function asyncOutcomeOf (read: (signal: AbortSignal) => Promise<unknown>): Promise<{ code: string, value?: unknown }> {
  try {
    return { code: 'ok', value: await read(AbortSignal.timeout(READ_DEADLINE_MS)) }
  } catch (err) {
    return { code: typedCode(err) }
  }
}

// Keys that make a careless `String(x)` or `x.y` misbehave on a parsed-from-JSON object.
// The field names our messages read are in the pool so hostile values land where they are read.
const trickyKey = fc.constantFrom('toString', 'valueOf', '__proto__', 'constructor', 'hasOwnProperty', 'then', 'length', 'toJSON',
  'reason', 'code', 'error', 'version', 'upstream', 'upstreams', 'labels', 'ports', 'agent', 'ok', 'spoke')
const jsonLeaf = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null))
const hostileJson = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, jsonLeaf, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(fc.oneof(fc.string(), trickyKey), tie('value'), { maxKeys: 4 }),
})).value
/** JSON text of a hostile value: JSON.parse of it builds own `__proto__`/`toString` keys just as a peer's bytes would. */
const hostileJsonText = hostileJson.map((value) => JSON.stringify(value)).filter((text): text is string => typeof text === 'string')

function mutate<T extends Record<string, unknown>> (valid: T): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid)
  return fc.record({
    drop: fc.subarray(keys),
    replace: fc.dictionary(fc.constantFrom(...keys), hostileJson, { maxKeys: 2 }),
    extra: fc.dictionary(trickyKey, hostileJson, { maxKeys: 2 }),
  }).map(({ drop, replace, extra }) => {
    const out: Record<string, unknown> = { ...valid, ...replace }
    for (const key of drop) Reflect.deleteProperty(out, key)
    // Through JSON text so `__proto__` becomes an own property, as when parsed from the wire.
    return JSON.parse(JSON.stringify({ ...out, ...Object.fromEntries(Object.entries(extra)) })) as unknown
  })
}

const validHello = { version: PROTOCOL_VERSION, agent: 'agent-1', upstreams: ['prometheus'], labels: { env: 'prod' } }
const validWelcome = { ok: true, spoke: 'orion', ports: [{ upstream: 'prometheus', host: '127.0.0.1', port: 19090 }] }
const validRefusal = { ok: false, code: 'SLK_ERR_EXIT_UNKNOWN_UPSTREAM', error: 'no such upstream' }

describe('message validators take any JSON value', () => {
  const anyMessage = fc.oneof(hostileJson, hostileJsonText.map((text) => JSON.parse(text) as unknown),
    mutate(validHello), mutate(validWelcome), mutate(validRefusal), mutate({ upstream: 'prometheus' }))

  test('parseHello, parseWelcome, parseStreamHeader: a value or SLK_ERR_PROTO_*', () => {
    fc.assert(fc.property(anyMessage, (value) => {
      for (const parse of [parseHello, parseWelcome, parseStreamHeader]) {
        const code = outcomeOf(() => parse(value))
        expect(code === 'ok' || code.startsWith('SLK_ERR_PROTO_')).toBe(true)
      }
    }), { numRuns: RUNS * 3 })
  })

  test('a valid hello still parses after the fuzzing (the property can tell ok from refused)', () => {
    expect(parseHello(JSON.parse(JSON.stringify(validHello)))).toEqual(validHello)
  })

  test.each([
    ['hello with a version object that has no usable toString', () => parseHello(JSON.parse('{"version":{"toString":1}}'))],
    ['refusal welcome whose code has no usable toString', () => parseWelcome(JSON.parse('{"ok":false,"code":{"toString":1,"valueOf":1},"error":"x"}'))],
    ['refusal welcome whose error has no usable toString', () => parseWelcome(JSON.parse('{"ok":false,"code":"x","error":{"toString":{}}}'))],
  ])('regression: %s is a typed error or value, never a TypeError', (_name, parse) => {
    expect(['ok', 'SLK_ERR_PROTO_HEADER_INVALID', 'SLK_ERR_PROTO_VERSION_MISMATCH']).toContain(outcomeOf(parse))
  })
})

describe('readFramedJson and readStreamStatus take any bytes in any chunking', () => {
  const chunked = (bytes: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array[]> =>
    fc.tuple(bytes, fc.array(fc.nat(), { maxLength: 6 })).map(([all, cuts]) => {
      const points = [...new Set(cuts.map((cut) => cut % (all.length + 1)))].sort((a, b) => a - b)
      const chunks: Uint8Array[] = []
      let start = 0
      for (const point of [...points, all.length]) {
        chunks.push(all.subarray(start, point))
        start = point
      }
      return chunks
    })
  const framed = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    hostileJsonText.map((text) => new Uint8Array(encodeFramedJson(JSON.parse(text)))),
    // A valid frame with bytes flipped, cut short or extended.
    fc.tuple(hostileJsonText, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.integer({ min: -8, max: 8 }))
      .map(([text, flips, resize]) => {
        const frame = Buffer.from(encodeFramedJson(JSON.parse(text)))
        for (const [at, byte] of flips) frame[at % frame.length] = byte
        return new Uint8Array(resize < 0 ? frame.subarray(0, Math.max(0, frame.length + resize)) : Buffer.concat([frame, Buffer.alloc(resize, 0x7b)]))
      })
  )

  test('readFramedJson: a JSON value or SLK_ERR_PROTO_*, then every validator is safe on it', async () => {
    await fc.assert(fc.asyncProperty(chunked(framed), async (chunks) => {
      const { code, value } = await asyncOutcomeOf(async (signal) => readFramedJson(streamOf(chunks), { maxBytes: 1024, signal }))
      expect(code === 'ok' || code.startsWith('SLK_ERR_PROTO_')).toBe(true)
      if (code === 'ok') for (const parse of [parseHello, parseWelcome, parseStreamHeader]) outcomeOf(() => parse(value))
    }), { numRuns: RUNS })
  })

  test('readStreamStatus: ok, refused or closed', async () => {
    const status = fc.tuple(fc.integer({ min: 0, max: 255 }), framed).map(([byte, rest]) => Uint8Array.of(byte, ...rest))
    await fc.assert(fc.asyncProperty(chunked(status), async (chunks) => {
      const { code } = await asyncOutcomeOf(async (signal) => { await readStreamStatus(streamOf(chunks), { signal }) })
      expect(['ok', 'SLK_ERR_PROTO_UPSTREAM_REFUSED', 'SLK_ERR_PROTO_CLOSED', 'SLK_ERR_PROTO_HEADER_INVALID', 'SLK_ERR_PROTO_HEADER_TOO_LARGE']).toContain(code)
    }), { numRuns: RUNS })
  })

  test('regression: a refusal whose reason has no usable toString is SLK_ERR_PROTO_UPSTREAM_REFUSED', async () => {
    const bytes = Buffer.concat([Buffer.of(1), encodeFramedJson(JSON.parse('{"reason":{"toString":0,"valueOf":0}}'))])
    await expect(readStreamStatus(streamOf([bytes]))).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_UPSTREAM_REFUSED' })
  })

  test('a truncated frame is SLK_ERR_PROTO_CLOSED, not a hang', async () => {
    await expect(readFramedJson(streamOf([Uint8Array.of(0, 0, 0, 9, 0x7b)]), { signal: AbortSignal.timeout(READ_DEADLINE_MS) }))
      .rejects.toBeInstanceOf(ProtocolError)
  })
})

describe('FrameParser takes any bytes in any chunking', () => {
  /** Everything the parser reported, as text, ending in the error code if it failed. */
  function parse (chunks: Uint8Array[], maxDataBytes: number): string[] {
    const events: string[] = []
    const parser = new FrameParser({
      onHeader: (h) => { events.push(`h${h.type}:${h.flags}:${h.streamId}:${h.length}`) },
      onPayload: (_h, piece) => { events.push(`p${piece.toString('hex')}`) },
      onDataEnd: (h) => { events.push(`e${h.streamId}`) },
    }, { maxDataBytes })
    try {
      for (const chunk of chunks) parser.push(Buffer.from(chunk))
      events.push(parser.midFrame ? 'mid' : 'done')
    } catch (err) {
      events.push(typedCode(err))
    }
    // Payload pieces depend on chunking; their concatenation does not.
    return events.reduce<string[]>((out, event) => {
      const last = out.at(-1)
      if (event.startsWith('p') && last?.startsWith('p') === true) out[out.length - 1] = last + event.slice(1)
      else out.push(event)
      return out
    }, [])
  }

  const frame = fc.record({
    version: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    type: fc.integer({ min: 0, max: 5 }),
    flags: fc.integer({ min: 0, max: 0xffff }),
    streamId: fc.nat(),
    payload: fc.uint8Array({ maxLength: 40 }),
    lie: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: -40, max: 1 << 20 }) }),
  }).map(({ version, type, flags, streamId, payload, lie }) => {
    const isData = type === FRAME_TYPE.DATA
    const header = encodeHeader(Math.min(type, 3) as FrameType, flags, streamId, isData ? Math.max(0, payload.length + lie) : lie >>> 0)
    header[0] = version
    header[1] = type
    return Buffer.concat([header, isData ? payload : Buffer.alloc(0)])
  })
  const wire = fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.array(frame, { maxLength: 8 }).map((frames) => new Uint8Array(Buffer.concat(frames))))
  const split = fc.tuple(wire, fc.array(fc.nat(), { maxLength: 10 }), fc.integer({ min: 0, max: 64 }))

  test('the outcome is the same for every chunking, and any failure is a MuxError SLK_ERR_MUX_*', () => {
    fc.assert(fc.property(split, ([bytes, cuts]) => {
      const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b)
      const chunks: Uint8Array[] = []
      let start = 0
      for (const point of [...points, bytes.length]) {
        chunks.push(bytes.subarray(start, point))
        start = point
      }
      const whole = parse([bytes], 64)
      expect(parse(chunks, 64)).toEqual(whole)
      const last = whole.at(-1) ?? ''
      expect(last === 'done' || last === 'mid' || last.startsWith('SLK_ERR_MUX_')).toBe(true)
    }), { numRuns: RUNS * 2 })
  })

  test('a header split one byte at a time decodes like a whole one', () => {
    const bytes = Buffer.concat([encodeHeader(FRAME_TYPE.PING, 1, 0, 7), encodeHeader(FRAME_TYPE.DATA, 2, 3, 2), Buffer.of(0xaa, 0xbb)])
    const single = [...bytes].map((byte) => Uint8Array.of(byte))
    expect(parse(single, 64)).toEqual(parse([bytes], 64))
    expect(bytes.length).toBe(2 * HEADER_BYTES + 2)
  })
})
