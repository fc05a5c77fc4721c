/**
 * streamBinaryPayloads against ws's own receiver: the same bytes, from a raw TCP client, go to a plain
 * `ws` server and to one whose receiver streams binary payloads, and both must see the same binary
 * bytes, text messages, pings, close code and errors, and answer with the same frames.
 */
import { once } from 'node:events'
import { connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { describe, expect, onTestFinished, test } from 'vitest'
import { WebSocketServer } from 'ws'
import type { WebSocket } from 'ws'
import { streamBinaryPayloads } from '../src/ws-streaming-receiver.js'

const MiB = 1024 * 1024
const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const

interface FrameSpec {
  opcode: number
  payload?: Buffer
  fin?: boolean
  /** A 4-byte key; omitted means an unmasked frame (which a server must refuse). */
  mask?: Buffer
  rsv1?: boolean
}

/** One client frame on the wire, masked with `mask` (RFC 6455 §5.2). */
function frame ({ opcode, payload = Buffer.alloc(0), fin = true, mask = randomBytes(4), rsv1 = false }: FrameSpec): Buffer {
  const length = payload.length
  const lengthBytes = length > 0xffff ? 8 : length > 125 ? 2 : 0
  const header = Buffer.alloc(2 + lengthBytes + 4)
  header[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode
  header[1] = 0x80 | (lengthBytes === 8 ? 127 : lengthBytes === 2 ? 126 : length)
  if (lengthBytes === 2) header.writeUInt16BE(length, 2)
  if (lengthBytes === 8) header.writeBigUInt64BE(BigInt(length), 2)
  mask.copy(header, 2 + lengthBytes)
  const masked = Buffer.from(payload)
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] ?? 0) ^ (mask[i & 3] ?? 0)
  return Buffer.concat([header, masked])
}

function unmaskedFrame (opcode: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload])
}

function closePayload (code: number, reason = ''): Buffer {
  const buf = Buffer.alloc(2 + Buffer.byteLength(reason))
  buf.writeUInt16BE(code, 0)
  buf.write(reason, 2)
  return buf
}

/** What a server saw of one connection. */
interface ServerRecord {
  binary: Buffer
  /** Binary pieces handed on, through 'message' or the onPiece callback. */
  binaryEvents: number
  /** Of those, the ones that came as a binary 'message'. */
  binaryMessages: number
  texts: string[]
  pings: string[]
  close?: { code: number, reason: string }
  errorCode?: string
}

/** Server frames the raw client received (unmasked, so easy to parse). */
function parseServerFrames (bytes: Buffer): Array<{ opcode: number, payload: string }> {
  const frames: Array<{ opcode: number, payload: string }> = []
  let at = 0
  while (at + 2 <= bytes.length) {
    let length = (bytes[at + 1] ?? 0) & 0x7f
    let start = at + 2
    if (length === 126) { length = bytes.readUInt16BE(at + 2); start += 2 }
    const opcode = (bytes[at] ?? 0) & 0x0f
    const payload = bytes.subarray(start, start + length)
    frames.push({ opcode, payload: opcode === OP.close && payload.length >= 2 ? `${payload.readUInt16BE(0)} ${payload.subarray(2).toString()}` : payload.toString() })
    at = start + length
  }
  return frames
}

/** How a server receives: plain `ws`, streamed pieces as `'message'`, or streamed pieces to an `onPiece` callback. */
type ReceiveMode = 'plain' | 'streaming' | 'callback'

async function startServer (mode: ReceiveMode, maxPayload: number): Promise<{ port: number, connections: Array<Promise<ServerRecord>> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload })
  await once(wss, 'listening')
  onTestFinished(async () => { await new Promise<void>((resolve) => { wss.close(() => { resolve() }) }) })
  const connections: Array<Promise<ServerRecord>> = []
  wss.on('connection', (ws: WebSocket) => {
    const record: ServerRecord = { binary: Buffer.alloc(0), binaryEvents: 0, binaryMessages: 0, texts: [], pings: [] }
    const pieces: Buffer[] = []
    const onPiece = (data: Buffer): void => {
      pieces.push(Buffer.from(data)) // a copy: a streamed piece is a view into the socket's chunk
      record.binaryEvents++
    }
    if (mode !== 'plain') expect(streamBinaryPayloads(ws, mode === 'callback' ? onPiece : undefined), 'installed on a fresh ws 8 receiver').toBe(true)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        onPiece(data)
        record.binaryMessages++
      } else record.texts.push(data.toString())
    })
    ws.on('ping', (data: Buffer) => { record.pings.push(data.toString()) })
    ws.on('error', (err: Error & { code?: string }) => { record.errorCode = err.code })
    connections.push(new Promise((resolve) => {
      ws.on('close', (code: number, reason: Buffer) => {
        record.close = { code, reason: reason.toString() }
        record.binary = Buffer.concat(pieces)
        resolve(record)
      })
    }))
  })
  return { port: (wss.address() as AddressInfo).port, connections }
}

async function upgrade (port: number): Promise<{ socket: Socket, received: Buffer[] }> {
  const socket = connect(port, '127.0.0.1')
  onTestFinished(() => { socket.destroy() })
  await once(socket, 'connect')
  socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
  let head: Buffer = Buffer.alloc(0)
  while (!head.includes('\r\n\r\n')) head = Buffer.concat([head, (await once(socket, 'data'))[0] as Buffer])
  const end = head.indexOf('\r\n\r\n') + 4
  expect(head.subarray(0, 12).toString()).toBe('HTTP/1.1 101')
  const received = [head.subarray(end)]
  socket.on('data', (chunk: Buffer) => { received.push(chunk) })
  return { socket, received }
}

/** Sends `bytes` in the given split to a plain and to a streaming server; returns what each saw and answered. */
async function both (bytes: Buffer, options: { maxPayload?: number, splits?: number[], modes?: ReceiveMode[] } = {}): Promise<Array<ServerRecord & { answered: Array<{ opcode: number, payload: string }> }>> {
  const results = []
  for (const mode of options.modes ?? ['plain', 'streaming']) {
    const server = await startServer(mode, options.maxPayload ?? 64 * MiB)
    const { socket, received } = await upgrade(server.port)
    const closed = once(socket, 'close')
    let at = 0
    for (const size of options.splits ?? []) {
      socket.write(bytes.subarray(at, at + size))
      at += size
    }
    socket.end(bytes.subarray(at))
    await closed
    const [connection] = server.connections
    if (connection === undefined) throw new Error('the server saw no connection')
    results.push({ ...await connection, answered: parseServerFrames(Buffer.concat(received)) })
  }
  return results
}

/** The record without the binary bytes (compared with Buffer.equals: a deep equal walks them byte by byte) and their event count. */
function comparable (record: ServerRecord | undefined): object {
  if (record === undefined) return {}
  const { binaryEvents: _events, binaryMessages: _messages, binary: _binary, ...rest } = record
  return rest
}

/** Two binary messages in fragments with a ping and a fragmented text between them, an empty binary message, a close. */
const fragmentedExchange = (() => {
  const a = randomBytes(70_000)
  const b = randomBytes(300)
  const bytes = Buffer.concat([
    frame({ opcode: OP.binary, payload: a.subarray(0, 10), fin: false }),
    frame({ opcode: OP.ping, payload: Buffer.from('p1') }),
    frame({ opcode: OP.continuation, payload: a.subarray(10, 65_000), fin: false }),
    frame({ opcode: OP.continuation, payload: Buffer.alloc(0), fin: false }),
    frame({ opcode: OP.continuation, payload: a.subarray(65_000) }),
    frame({ opcode: OP.text, payload: Buffer.from('hé'), fin: false }),
    frame({ opcode: OP.continuation, payload: Buffer.from('llo') }),
    frame({ opcode: OP.binary, payload: b, mask: Buffer.alloc(4) }),
    frame({ opcode: OP.binary, payload: Buffer.alloc(0) }),
    frame({ opcode: OP.close, payload: closePayload(4000, 'bye') }),
  ])
  return { bytes, binary: Buffer.concat([a, b]) }
})()

describe('streamBinaryPayloads', () => {
  test('a masked 4 MiB message arrives as views of the socket reads, byte-exact; ws delivered it whole', async () => {
    const payload = randomBytes(4 * MiB)
    const bytes = Buffer.concat([frame({ opcode: OP.binary, payload }), frame({ opcode: OP.close, payload: closePayload(1000) })])
    const [plain, streamed] = await both(bytes, { splits: [1, 2, 3, 5, 7, 11, 1000] })
    expect(plain?.binary.equals(payload)).toBe(true)
    expect(plain?.binaryEvents).toBe(1)
    // A socket read is at most 64 KiB, so 4 MiB cannot come in fewer than 64 pieces.
    expect(streamed?.binaryEvents).toBeGreaterThanOrEqual(64)
    expect(streamed?.binary.equals(payload), 'the pieces, unmasked at their offsets, are the payload').toBe(true)
    expect(comparable(streamed)).toEqual(comparable(plain))
    expect(streamed?.close).toEqual({ code: 1000, reason: '' })
  })

  test('fragments with a ping and a text message between two binary messages: same bytes, pong and order', async () => {
    const [plain, streamed] = await both(fragmentedExchange.bytes, { splits: [3, 9, 40_000, 17] })
    expect(plain?.binary.equals(fragmentedExchange.binary)).toBe(true)
    expect(streamed?.binary.equals(fragmentedExchange.binary)).toBe(true)
    expect(comparable(streamed)).toEqual(comparable(plain))
    expect(streamed).toMatchObject({ texts: ['héllo'], pings: ['p1'], close: { code: 4000, reason: 'bye' } })
    expect(streamed?.answered).toEqual([{ opcode: OP.pong, payload: 'p1' }, { opcode: OP.close, payload: '4000 bye' }])
  })

  test('with onPiece the binary pieces go to it, not to message; text, ping, the empty binary message and close as ws', async () => {
    const [plain, callback] = await both(fragmentedExchange.bytes, { splits: [3, 9, 40_000, 17], modes: ['plain', 'callback'] })
    expect(callback?.binary.equals(fragmentedExchange.binary)).toBe(true)
    expect(comparable(callback)).toEqual(comparable(plain))
    expect(callback?.answered).toEqual(plain?.answered)
    // Only the empty binary message (ws's own whole-frame path) still comes as a 'message'.
    expect(callback?.binaryMessages).toBe(1)
    expect(callback?.binaryEvents).toBeGreaterThanOrEqual(5)
  })

  test('maxPayload counts the whole message across fragments: 1009 before the excess arrives', async () => {
    const bytes = Buffer.concat([
      frame({ opcode: OP.binary, payload: randomBytes(600), fin: false }),
      frame({ opcode: OP.continuation, payload: randomBytes(600) }),
    ])
    const [plain, streamed] = await both(bytes, { maxPayload: 1000 })
    expect(plain).toMatchObject({ errorCode: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', close: { code: 1006 } })
    expect(plain?.answered).toEqual([{ opcode: OP.close, payload: '1009 ' }])
    expect(streamed?.errorCode).toBe(plain?.errorCode)
    expect(streamed?.answered).toEqual(plain?.answered)
    // The first fragment (600 ≤ 1000) was handed on as it came; the one over the cap never was.
    expect(streamed?.binary.length).toBe(600)
  })

  // The last column: binary bytes the streaming receiver handed on before the bad frame (ws, which
  // waits for the whole message, hands on none); the connection fails either way.
  test.each([
    ['an unmasked frame', unmaskedFrame(OP.binary, Buffer.from('x')), 'WS_ERR_EXPECTED_MASK', '1002 ', ''],
    ['a continuation with no message open', frame({ opcode: OP.continuation, payload: Buffer.from('x') }), 'WS_ERR_INVALID_OPCODE', '1002 ', ''],
    ['a new binary message inside a fragmented one', Buffer.concat([frame({ opcode: OP.binary, payload: Buffer.from('x'), fin: false }), frame({ opcode: OP.binary, payload: Buffer.from('y') })]), 'WS_ERR_INVALID_OPCODE', '1002 ', 'x'],
    ['RSV1 without permessage-deflate', frame({ opcode: OP.binary, payload: Buffer.from('x'), rsv1: true }), 'WS_ERR_UNEXPECTED_RSV_1', '1002 ', ''],
    ['a fragmented ping', frame({ opcode: OP.ping, payload: Buffer.from('x'), fin: false }), 'WS_ERR_EXPECTED_FIN', '1002 ', ''],
    ['close code 999', frame({ opcode: OP.close, payload: closePayload(999) }), 'WS_ERR_INVALID_CLOSE_CODE', '1002 ', ''],
    ['invalid UTF-8 text', frame({ opcode: OP.text, payload: Buffer.from([0xff, 0xfe]) }), 'WS_ERR_INVALID_UTF8', '1007 ', ''],
  ])('%s: the same error and close code as ws', async (_name, bytes, errorCode, closeFrame, handedOn) => {
    const [plain, streamed] = await both(bytes)
    expect(plain?.errorCode).toBe(errorCode)
    expect(plain?.answered).toEqual([{ opcode: OP.close, payload: closeFrame }])
    expect(plain?.binary.length).toBe(0)
    expect(streamed?.binary.toString()).toBe(handedOn)
    expect(comparable(streamed)).toEqual(comparable(plain))
  })

  test('changes nothing on a receiver it does not know or that already read data', () => {
    expect(streamBinaryPayloads({} as unknown as WebSocket)).toBe(false)
    const reading = { _receiver: { getData: () => {}, consume: () => Buffer.alloc(0), emit: () => true, _buffers: [Buffer.alloc(1)], _fragments: [], _bufferedBytes: 1, _payloadLength: 0, _opcode: 0, _fragmented: 0, _totalPayloadLength: 0, _messageLength: 0, _numFragments: 0, _maxFragments: 0, _state: 0, _fin: false, _compressed: false, _masked: false, _allowSynchronousEvents: true, _loop: false, _binaryType: 'nodebuffer' } }
    const before = reading._receiver.getData
    expect(streamBinaryPayloads(reading as unknown as WebSocket)).toBe(false)
    expect(reading._receiver.getData).toBe(before)
    // Between two fragments of a message: ws holds the first ones, which streaming would drop at FIN.
    const midMessage = { _receiver: { ...reading._receiver, _buffers: [], _bufferedBytes: 0, _fragmented: 2, _fragments: [Buffer.from('held')] } }
    expect(streamBinaryPayloads(midMessage as unknown as WebSocket)).toBe(false)
    expect(midMessage._receiver.getData).toBe(before)
  })
})
