/**
 * createBinaryFrameWriter against ws: its headers byte-equal ws's own Sender.frame, and a plain ws
 * peer (no streaming receiver) reads its frames as the messages they carry, in order with ws's own
 * control frames, both from a client (zero-masked) and from a server (unmasked).
 */
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { describe, expect, onTestFinished, test } from 'vitest'
import * as wsModule from 'ws'
import { WebSocket, WebSocketServer } from 'ws'
import { createBinaryFrameWriter, encodeBinaryFrameHeader } from '../src/ws-frame-writer.js'
import type { BinaryFrameWriter } from '../src/ws-frame-writer.js'
import { generateZeroMask } from '../src/zero-mask.js'

const MiB = 1024 * 1024

/** ws's Sender.frame (exported at runtime, absent from @types/ws). */
const { Sender } = wsModule as unknown as { Sender: { frame: (data: Buffer, options: Record<string, unknown>) => Buffer[] } }

async function pair (options: { perMessageDeflate?: boolean } = {}): Promise<{ client: WebSocket, server: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: options.perMessageDeflate ?? false, maxPayload: 64 * MiB })
  await once(wss, 'listening')
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: options.perMessageDeflate ?? false, maxPayload: 64 * MiB })
  await once(client, 'open')
  const [server] = await accepted
  onTestFinished(async () => {
    client.terminate()
    server.terminate()
    await new Promise<void>((resolve) => { wss.close(() => { resolve() }) })
  })
  return { client, server }
}

function writerOf (ws: WebSocket): BinaryFrameWriter {
  const writer = createBinaryFrameWriter(ws)
  if (writer === undefined) throw new Error('no frame writer for a ws 8 socket')
  return writer
}

async function write (writer: BinaryFrameWriter, chunks: Buffer[]): Promise<Error | undefined> {
  return new Promise((resolve) => { writer(chunks, chunks.reduce((n, c) => n + c.length, 0), (err) => { resolve(err ?? undefined) }) })
}

/** Collects what `ws` emits, in order: 'm:<sha-free summary>' per message, 'ping:<text>' per ping. */
function record (ws: WebSocket): { events: Array<string | Buffer> } {
  const events: Array<string | Buffer> = []
  ws.on('message', (data: Buffer, isBinary: boolean) => { events.push(isBinary ? data : `text:${data.toString()}`) })
  ws.on('ping', (data: Buffer) => { events.push(`ping:${data.toString()}`) })
  return { events }
}

describe('encodeBinaryFrameHeader', () => {
  test.each([0, 1, 125, 126, 65_535, 65_536, 5 * MiB])('%i bytes: the header ws.Sender.frame writes, unmasked and zero-masked', (bytes) => {
    const data = Buffer.alloc(bytes)
    const [plain] = Sender.frame(data, { fin: true, opcode: 2, mask: false, readOnly: false, rsv1: false })
    expect(encodeBinaryFrameHeader(bytes, false).equals(plain ?? Buffer.alloc(0))).toBe(true)
    const [masked] = Sender.frame(data, { fin: true, opcode: 2, mask: true, generateMask: generateZeroMask, maskBuffer: Buffer.alloc(4), readOnly: false, rsv1: false })
    expect(encodeBinaryFrameHeader(bytes, true).equals(masked ?? Buffer.alloc(0))).toBe(true)
  })
})

describe('createBinaryFrameWriter', () => {
  test('client frames (zero mask) reach a plain ws server as whole messages, in order with ws pings and text', async () => {
    const { client, server } = await pair()
    const seen = record(server)
    const writer = writerOf(client)
    const a = [Buffer.from('head'), randomBytes(70_000), Buffer.alloc(0), randomBytes(3)]
    const b = [randomBytes(200)]
    expect(await write(writer, a)).toBeUndefined()
    client.ping('between')
    client.send('text')
    expect(await write(writer, b)).toBeUndefined()
    await expect.poll(() => seen.events.length).toBe(4)
    const [first, ping, text, second] = seen.events
    expect(Buffer.isBuffer(first) && first.equals(Buffer.concat(a))).toBe(true)
    expect([ping, text]).toEqual(['ping:between', 'text:text'])
    expect(Buffer.isBuffer(second) && second.equals(Buffer.concat(b))).toBe(true)
  })

  test('server frames (unmasked) reach a plain ws client as whole messages; 5 MiB in 64 KiB chunks too', async () => {
    const { client, server } = await pair()
    const seen = record(client)
    const writer = writerOf(server)
    const chunks = Array.from({ length: 80 }, () => randomBytes(65_536))
    expect(await write(writer, chunks)).toBeUndefined()
    await expect.poll(() => seen.events.length).toBe(1)
    const [message] = seen.events
    expect(Buffer.isBuffer(message) && message.equals(Buffer.concat(chunks))).toBe(true)
  })

  test('after close() a write fails as ws.send fails it, and nothing more reaches the peer', async () => {
    const { client, server } = await pair()
    const seen = record(server)
    const writer = writerOf(client)
    client.close(1000)
    const err = await write(writer, [Buffer.from('late')])
    expect(err?.message).toBe('WebSocket is not open: readyState 2 (CLOSING)')
    await once(server, 'close')
    expect(seen.events).toEqual([])
  })

  test('stands aside (undefined) when permessage-deflate was negotiated', async () => {
    const { client, server } = await pair({ perMessageDeflate: true })
    expect(client.extensions).toBe('permessage-deflate')
    expect(createBinaryFrameWriter(client)).toBeUndefined()
    expect(createBinaryFrameWriter(server)).toBeUndefined()
  })

  test('stands aside (undefined) on a WebSocket that is not ws 8 inside', () => {
    expect(createBinaryFrameWriter({ extensions: '' } as unknown as WebSocket)).toBeUndefined()
  })
})
