import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import type { Duplex } from 'node:stream'
import { describe, expect, onTestFinished, test } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { waitFor } from '@spokelink/testkit'
import { createMuxSession, createWebSocketDuplex } from '../src/index.js'
import { groupIntoFrames, takeChunks } from '../src/ws-duplex.js'
import type { MuxStream } from '../src/index.js'

const MiB = 1024 * 1024

async function wsPair (): Promise<{ client: Duplex, server: Duplex, clientWs: WebSocket, serverWs: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 * MiB })
  await once(wss, 'listening')
  const { port } = wss.address() as AddressInfo
  const accepted = new Promise<{ server: Duplex, serverWs: WebSocket }>((resolve) => {
    // Attached synchronously on connection: messages before the duplex exists would be lost.
    wss.once('connection', (ws: WebSocket) => { resolve({ server: createWebSocketDuplex(ws), serverWs: ws }) })
  })
  const clientWs = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: 64 * MiB })
  const client = createWebSocketDuplex(clientWs)
  const { server, serverWs } = await accepted
  onTestFinished(async () => {
    clientWs.terminate()
    serverWs.terminate()
    await new Promise<void>((resolve) => { wss.close(() => { resolve() }) })
  })
  return { client, server, clientWs, serverWs }
}

describe('createWebSocketDuplex', () => {
  test('carries a MuxSession: 64 MiB sha256-exact, then a clean close', async () => {
    const { client, server } = await wsPair()
    const agent = createMuxSession(client, 'client', { keepaliveIntervalMs: 0 })
    const exitNode = createMuxSession(server, 'server', { keepaliveIntervalMs: 0 })
    const total = 64 * MiB
    const received = new Promise<{ sha: string, bytes: number }>((resolve, reject) => {
      exitNode.once('stream', (s: MuxStream) => {
        const hash = createHash('sha256')
        let bytes = 0
        s.on('data', (c: Buffer) => { hash.update(c); bytes += c.length })
        s.on('end', () => { s.end(); resolve({ sha: hash.digest('hex'), bytes }) })
        s.on('error', reject)
      })
    })
    const stream = agent.openStream()
    stream.resume()
    const block = randomBytes(MiB + 65_536)
    const hash = createHash('sha256')
    for (let sent = 0, i = 0; sent < total; i++) {
      const at = (i * 7919 * 61) % MiB
      const chunk = block.subarray(at, at + 65_536)
      hash.update(chunk)
      sent += chunk.length
      if (!stream.write(chunk)) await once(stream, 'drain')
    }
    stream.end()
    expect(await received).toEqual({ sha: hash.digest('hex'), bytes: total })
    const exitClosed = once(exitNode, 'close')
    await agent.close()
    expect(await exitClosed).toEqual([undefined])
  })

  test('takeChunks: pieces go to the taker while the duplex flows with nothing buffered; else through the buffer, in order', async () => {
    const { client, server } = await wsPair()
    const log: string[] = []
    client.write('one')
    await waitFor(() => server.readableLength === 3, { what: 'the first message to wait in the read buffer' })
    expect(takeChunks(server, (chunk) => { log.push(`taken ${chunk.toString()}`) })).toBe(true)
    server.on('data', (chunk: Buffer) => { log.push(`data ${chunk.toString()}`) })
    client.write('two')
    await waitFor(() => log.length === 2, { what: 'both messages' })
    expect(log).toEqual(['data one', 'taken two'])
    server.pause()
    client.write('three')
    await waitFor(() => server.readableLength === 5, { what: 'the third message to wait while paused' })
    server.resume()
    await waitFor(() => log.length === 3, { what: 'the third message' })
    expect(log).toEqual(['data one', 'taken two', 'data three'])
    expect(takeChunks(new PassThrough(), () => {})).toBe(false)
  })

  test('a MuxSession takes its WebSocket duplex\'s pieces directly: no data event, bytes exact', async () => {
    const { client, server } = await wsPair()
    let dataEvents = 0
    const agent = createMuxSession(client, 'client', { keepaliveIntervalMs: 0 })
    const exitNode = createMuxSession(server, 'server', { keepaliveIntervalMs: 0 })
    server.on('data', () => { dataEvents++ })
    const payload = randomBytes(MiB)
    const received = new Promise<Buffer>((resolve, reject) => {
      exitNode.once('stream', (s: MuxStream) => {
        const chunks: Buffer[] = []
        s.on('data', (c: Buffer) => { chunks.push(c) })
        s.on('end', () => { s.end(); resolve(Buffer.concat(chunks)) })
        s.on('error', reject)
      })
    })
    const stream = agent.openStream()
    stream.resume()
    stream.end(payload)
    expect((await received).equals(payload)).toBe(true)
    expect(dataEvents).toBe(0)
    await Promise.all([agent.close(), exitNode.close()])
  })

  test('batches writes into one message and pushes binary messages', async () => {
    const { client, server, serverWs } = await wsPair()
    // Each small message arrives as one piece, and pieces of two messages are never joined.
    const messages: Buffer[] = []
    server.on('data', (m: Buffer) => messages.push(m))
    client.cork()
    client.write(Buffer.from('ab'))
    client.write(Buffer.from('cd'))
    client.uncork()
    serverWs.send(Buffer.from('pong'))
    const [chunk] = await once(client, 'data') as [Buffer]
    expect(chunk.toString()).toBe('pong')
    client.write(Buffer.from('!'))
    await waitFor(() => messages.length === 2, { what: 'two messages at the server' })
    expect(messages.map((m) => m.toString())).toEqual(['abcd', '!'])
  })

  test('a text message destroys the duplex with SLK_ERR_MUX_TRANSPORT_MESSAGE', async () => {
    const { client, serverWs } = await wsPair()
    const errored = once(client, 'error')
    serverWs.send('not binary')
    expect((await errored)[0]).toMatchObject({ code: 'SLK_ERR_MUX_TRANSPORT_MESSAGE' })
  })

  test('end() closes the WebSocket with 1000 and the peer sees the end', async () => {
    const { client, server, serverWs } = await wsPair()
    const closed = once(serverWs, 'close')
    server.resume()
    const ended = once(server, 'end')
    client.end(Buffer.from('last'))
    await ended
    const [code] = await closed as [number]
    expect(code).toBe(1000)
  })
})

describe('groupIntoFrames', () => {
  test('groups small chunks up to the cap, keeps a header with its payload, a big chunk alone, nothing copied', () => {
    const header = Buffer.alloc(12, 1)
    const big = Buffer.alloc(300_000, 2)
    const small = Array.from({ length: 10 }, (_, i) => Buffer.alloc(40_000, i))
    const groups = groupIntoFrames([...small, header, big], 100_000)
    expect(groups.map((g) => g.bytes)).toEqual([80_000, 80_000, 80_000, 80_000, 80_000, 12 + 300_000])
    expect(groups.map((g) => g.chunks.reduce((n, c) => n + c.length, 0))).toEqual(groups.map((g) => g.bytes))
    // The very chunks, in order: identity, not a deep equal (which walks 700 KB byte by byte).
    const flat = groups.flatMap((g) => g.chunks)
    expect(flat.length).toBe(12)
    expect(flat.every((chunk, i) => chunk === [...small, header, big][i]), 'the groups hold the chunks themselves, in order').toBe(true)
  })
})
