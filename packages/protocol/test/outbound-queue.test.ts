import { Duplex } from 'node:stream'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, expect, onTestFinished, test } from 'vitest'
import { FLAG, FRAME_TYPE, encodeHeader } from '../src/mux/frame.js'
import { OutboundQueue } from '../src/mux/outbound-queue.js'

/**
 * A transport the test controls: every `_write`/`_writev` call is recorded as one batch and completes
 * only when the test calls `complete()`, so `write()` returns false once `highWaterMark` bytes wait.
 */
class ControlledTransport extends Duplex {
  readonly batches: Buffer[] = []
  #callbacks: Array<() => void> = []
  constructor (highWaterMark: number) {
    super({ writableHighWaterMark: highWaterMark, read () {} })
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.batches.push(chunk)
    this.#callbacks.push(callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: () => void): void {
    this.batches.push(Buffer.concat(chunks.map((c) => c.chunk)))
    this.#callbacks.push(callback)
  }

  /** Completes every write the transport has taken so far (and any it takes while doing so). */
  complete (): void {
    while (this.#callbacks.length > 0) this.#callbacks.shift()?.()
  }

  get written (): Buffer {
    return Buffer.concat(this.batches)
  }
}

const KiB = 1024

function setup (options: { highWaterMark?: number, maxQueuedAnswers?: number, maxQueuedBytes?: number } = {}): { queue: OutboundQueue, transport: ControlledTransport } {
  const transport = new ControlledTransport(options.highWaterMark ?? 64 * KiB)
  transport.on('error', () => {
    // a test that ends the transport early may make a late write fail; assertions are on batches
  })
  const queue = new OutboundQueue(transport, { maxQueuedAnswers: options.maxQueuedAnswers ?? 4, maxQueuedBytes: options.maxQueuedBytes ?? 1024 * KiB })
  onTestFinished(() => {
    queue.close(false)
    transport.destroy()
  })
  return { queue, transport }
}

const ack = (id: number): Buffer => encodeHeader(FRAME_TYPE.PING, FLAG.ACK, 0, id)
const header = (flags: number, id: number, length = 0): Buffer => encodeHeader(FRAME_TYPE.WINDOW_UPDATE, flags, id, length)

/** Puts the queue's transport into the blocked state with one write of `bytes` above its high-water mark. */
async function block (queue: OutboundQueue, transport: ControlledTransport, bytes: number): Promise<void> {
  queue.sendData(1, Buffer.alloc(bytes, 0x61))
  await nextTurn()
  expect(queue.blocked).toBe(true)
  transport.batches.length = 0
}

describe('OutboundQueue against a transport the test controls', () => {
  test('frames queued in one event-loop turn go out as one write, in order, after the turn', async () => {
    const { queue, transport } = setup()
    const payload = Buffer.from('hello')
    queue.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 1, 0)
    queue.sendData(1, payload)
    queue.sendFrame(FRAME_TYPE.PING, FLAG.SYN, 0, 7)
    expect(transport.batches).toHaveLength(0)
    await nextTurn()
    expect(transport.batches).toHaveLength(1)
    expect(transport.written.equals(Buffer.concat([header(FLAG.SYN, 1), encodeHeader(FRAME_TYPE.DATA, 0, 1, 5), payload, encodeHeader(FRAME_TYPE.PING, FLAG.SYN, 0, 7)]))).toBe(true)
    expect(queue.dataBytesSent).toBe(5)
    queue.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.FIN, 1, 0)
    await nextTurn()
    transport.complete()
    await nextTurn()
    expect(transport.batches).toHaveLength(2)
    expect(transport.batches[1]?.equals(header(FLAG.FIN, 1))).toBe(true)
  })

  test('while the transport is blocked frames are held, then go out in one write after drain', async () => {
    const { queue, transport } = setup({ highWaterMark: 1024 })
    await block(queue, transport, 4096)
    queue.sendFrame(FRAME_TYPE.WINDOW_UPDATE, 0, 1, 100)
    queue.sendFrame(FRAME_TYPE.WINDOW_UPDATE, 0, 3, 200)
    await nextTurn()
    await nextTurn()
    expect(transport.batches).toHaveLength(0)
    expect(transport.writableLength).toBe(12 + 4096)
    transport.complete()
    await nextTurn()
    expect(queue.blocked).toBe(false)
    expect(transport.batches).toHaveLength(1)
    expect(transport.written.equals(Buffer.concat([header(0, 1, 100), header(0, 3, 200)]))).toBe(true)
  })

  test('writers wait while the transport is blocked or maxQueuedBytes are queued, and are woken once it takes more', async () => {
    const { queue, transport } = setup({ highWaterMark: 1024, maxQueuedBytes: 2048 })
    const woken: string[] = []
    queue.whenWritable(() => woken.push('idle'))
    expect(woken).toEqual(['idle'])
    queue.sendData(1, Buffer.alloc(2048))
    queue.whenWritable(() => woken.push('full queue'))
    expect(woken).toEqual(['idle'])
    await nextTurn()
    // Flushed, but write() returned false: still waiting, now for 'drain'.
    expect(queue.blocked).toBe(true)
    queue.whenWritable(() => woken.push('blocked'))
    expect(woken).toEqual(['idle'])
    transport.complete()
    await nextTurn()
    expect(woken).toEqual(['idle', 'full queue', 'blocked'])
  })

  test('answers past maxQueuedAnswers while blocked are SLK_ERR_MUX_CONTROL_FLOOD; frames we originate do not count', async () => {
    const { queue, transport } = setup({ highWaterMark: 1024, maxQueuedAnswers: 3 })
    await block(queue, transport, 4096)
    queue.sendFrame(FRAME_TYPE.PING, FLAG.SYN, 0, 1)
    queue.sendFrame(FRAME_TYPE.WINDOW_UPDATE, FLAG.SYN, 5, 0)
    queue.sendData(5, Buffer.alloc(10))
    expect(queue.queuedAnswers).toBe(0)
    for (let i = 0; i < 2; i++) {
      expect(queue.roomForAnswer('PINGs')).toBeUndefined()
      queue.sendFrame(FRAME_TYPE.PING, FLAG.ACK, 0, i)
    }
    expect(queue.roomForAnswer('SYNs')).toBeUndefined()
    queue.sendRefusal(2)
    expect(queue.queuedAnswers).toBe(3)
    const flood = queue.roomForAnswer('PINGs')
    expect(flood).toMatchObject({ name: 'MuxError', code: 'SLK_ERR_MUX_CONTROL_FLOOD', closeReason: 'protocol-error' })
    expect(flood?.message).toContain('maxQueuedControlFrames (3)')
    expect(queue.queuedAnswers).toBe(3)
    expect(transport.batches).toHaveLength(0)
  })

  test('at the answer cap with a transport that drains, the answers are written at once instead', async () => {
    const { queue, transport } = setup({ maxQueuedAnswers: 2 })
    queue.sendFrame(FRAME_TYPE.PING, FLAG.ACK, 0, 1)
    queue.sendFrame(FRAME_TYPE.PING, FLAG.ACK, 0, 2)
    expect(queue.roomForAnswer('PINGs')).toBeUndefined()
    expect(queue.queuedAnswers).toBe(0)
    expect(transport.written.equals(Buffer.concat([ack(1), ack(2)]))).toBe(true)
  })

  test('close(true) writes what is held and ends the transport even while blocked; later frames are dropped and writers woken', async () => {
    const { queue, transport } = setup({ highWaterMark: 1024 })
    await block(queue, transport, 4096)
    let woken = 0
    queue.whenWritable(() => { woken++ })
    const goAway = encodeHeader(FRAME_TYPE.GO_AWAY, 0, 0, 1)
    queue.sendFrame(FRAME_TYPE.GO_AWAY, 0, 0, 1)
    queue.close(true)
    expect(woken).toBe(1)
    expect(queue.closed).toBe(true)
    queue.sendFrame(FRAME_TYPE.PING, FLAG.SYN, 0, 9)
    queue.sendData(1, Buffer.alloc(10))
    transport.complete()
    await nextTurn()
    expect(transport.writableEnded).toBe(true)
    expect(transport.written.equals(goAway)).toBe(true)
    expect(queue.dataBytesSent).toBe(4096)
  })

  test('close(false) drops what is held', async () => {
    const { queue, transport } = setup({ highWaterMark: 1024 })
    await block(queue, transport, 4096)
    queue.sendFrame(FRAME_TYPE.PING, FLAG.SYN, 0, 1)
    queue.close(false)
    transport.complete()
    await nextTurn()
    expect(transport.batches).toHaveLength(0)
    expect(transport.writableEnded).toBe(false)
  })
})
