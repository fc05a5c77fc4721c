import { once } from 'node:events'
import { describe, expect, onTestFinished, test } from 'vitest'
import { socketPair, waitFor } from '@spokelink/testkit'
import { createMuxSession } from '../src/index.js'
import type { MuxStream } from '../src/index.js'
import { FLAG, FRAME_TYPE, encodeHeader } from '../src/mux/frame.js'

const PIECES = 100
const PIECE_BYTES = 100
/** Frames after each piece in the same write, so every piece arrives in a transport chunk far larger than itself. */
const FILLER_FRAMES = 2000

describe('what a waiting stream keeps alive', () => {
  test('a stream nobody reads keeps only its own bytes, not the larger transport chunks its pieces arrived in', async () => {
    const [socket, peer] = await socketPair()
    const session = createMuxSession(socket, 'server', { keepaliveIntervalMs: 0, windowAutoTuning: false })
    onTestFinished(() => {
      session.abort()
      peer.destroy()
    })
    const streams: MuxStream[] = []
    session.on('stream', (stream: MuxStream) => {
      stream.on('error', () => { /* the session is aborted when the test ends */ })
      streams.push(stream)
    })
    let answered = false
    let received = Buffer.alloc(0)
    peer.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]).subarray(-12)
      if (received.length === 12 && received.readUInt8(1) === FRAME_TYPE.PING && received.readUInt32BE(8) === 0xfeed) answered = true
    })

    // Stream 1 waits (no reader); stream 3 only takes zero-length credit frames, the filler.
    peer.write(Buffer.concat([encodeHeader(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0), encodeHeader(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 3, 0)]))
    const filler = Buffer.concat(Array.from({ length: FILLER_FRAMES }, () => encodeHeader(FRAME_TYPE.WINDOW_UPDATE, 0, 3, 0)))
    const sent: Buffer[] = []
    for (let i = 0; i < PIECES; i++) {
      const piece = Buffer.alloc(PIECE_BYTES, i)
      sent.push(piece)
      if (!peer.write(Buffer.concat([encodeHeader(FRAME_TYPE.DATA, 0, 1, PIECE_BYTES), piece, filler]))) await once(peer, 'drain')
      // One write per turn, so the session reads them as separate chunks.
      await new Promise<void>((resolve) => { setImmediate(resolve) })
    }
    // The session answers this ping after it has handled every frame before it.
    peer.write(encodeHeader(FRAME_TYPE.PING, FLAG.SYN, 0, 0xfeed))
    await waitFor(() => answered, { what: 'the ping after the last piece answered' })

    const [waiting] = streams
    if (waiting === undefined) throw new Error('stream 1 was not accepted')
    expect(waiting.readableLength).toBe(PIECES * PIECE_BYTES)
    const chunks: Buffer[] = []
    waiting.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    await waitFor(() => chunks.reduce((n, c) => n + c.length, 0) === PIECES * PIECE_BYTES, { what: 'the waiting stream read' })
    expect(Buffer.concat(chunks).equals(Buffer.concat(sent))).toBe(true)
    // What the buffered pieces kept alive: each distinct backing ArrayBuffer once.
    const backing = new Set(chunks.map((c) => c.buffer))
    const keptBytes = [...backing].reduce((n, b) => n + b.byteLength, 0)
    // 10 KB of data; as slices of their ~24 KiB chunks they would keep ~2.4 MB alive.
    expect(keptBytes, `${chunks.length} chunks kept ${keptBytes} bytes of ArrayBuffers alive`).toBeLessThanOrEqual(64 * 1024)
  })
})
