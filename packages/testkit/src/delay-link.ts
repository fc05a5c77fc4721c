import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import type { ManualClock } from './manual-clock.js'

/** The time source of a delay link: a ms clock and one-shot timers (a {@link ManualClock} fits). */
export type DelayLinkClock = Pick<ManualClock, 'now' | 'setTimeout'>

/** The real clock: `performance.now()` and `setTimeout`. */
const REAL_CLOCK: DelayLinkClock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => {
    const timer = setTimeout(callback, ms)
    return () => { clearTimeout(timer) }
  },
}

/** Options of {@link createDelayLink}. */
export interface DelayLinkOptions {
  /** Where every accepted connection is relayed to. */
  target: { host: string, port: number }
  /**
   * How long each chunk is held in each direction (half the emulated round trip).
   * @default 25
   */
  oneWayDelayMs?: number
  /**
   * Emulated link rate; with the delay it sets the in-flight cap per direction,
   * `bandwidthBytesPerSec × 2 × oneWayDelayMs / 1000` bytes (the link's bandwidth-delay product).
   * @default 125_000_000 (1 Gbit/s)
   */
  bandwidthBytesPerSec?: number
  /**
   * The clock chunks are held by; a test passes `createManualClock()` to release them with `advance()`.
   * @default the real clock (`performance.now()` and `setTimeout`)
   */
  clock?: DelayLinkClock
}

/** Counters of a {@link DelayLink}, summed over its connections and both directions. */
export interface DelayLinkStats {
  /** Connections accepted so far. */
  connections: number
  /** Bytes released to the far side so far. */
  bytesForwarded: number
  /** Bytes held right now (received, not yet released). */
  inFlightBytes: number
  /** The most bytes ever held at once in one direction of one connection. */
  peakInFlightBytes: number
  /** The in-flight cap per direction, in bytes. */
  maxInFlightBytes: number
  /** How many times a source socket was paused because its direction was over the cap. */
  sourcePauses: number
}

/** A running delay link: connect to `127.0.0.1:port` to reach the target through it. */
export interface DelayLink {
  readonly port: number
  readonly stats: DelayLinkStats
  /** Stops listening and destroys every relayed connection; idempotent. */
  close: () => Promise<void>
}

/** Defaults of {@link DelayLinkOptions}. */
export const DELAY_LINK_DEFAULTS = {
  oneWayDelayMs: 25,
  bandwidthBytesPerSec: 125_000_000,
} as const satisfies Required<Omit<DelayLinkOptions, 'target' | 'clock'>>

interface Held {
  chunk: Buffer | null // null = the source's FIN, delayed like data
  dueAt: number
}

/**
 * One direction of one relayed connection: holds each chunk `delayMs` after its
 * arrival, caps the bytes held (pausing the source), and honours the
 * destination's backpressure. One timer, for the head of the queue.
 */
class DelayedDirection {
  private readonly queue: Held[] = []
  private head = 0
  private held = 0
  private cancelTimer: (() => void) | undefined
  private waitingDrain = false
  private done = false

  constructor (
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly delayMs: number,
    private readonly capBytes: number,
    private readonly stats: DelayLinkStats,
    private readonly clock: DelayLinkClock
  ) {
    src.on('data', (chunk: Buffer) => { this.onData(chunk) })
    src.on('end', () => { this.enqueue(null) })
    dst.on('drain', () => {
      this.waitingDrain = false
      this.release()
    })
  }

  private onData (chunk: Buffer): void {
    this.held += chunk.length
    this.stats.inFlightBytes += chunk.length
    if (this.held > this.stats.peakInFlightBytes) this.stats.peakInFlightBytes = this.held
    if (this.held >= this.capBytes && !this.src.isPaused()) {
      this.src.pause()
      this.stats.sourcePauses++
    }
    this.enqueue(chunk)
  }

  private enqueue (chunk: Buffer | null): void {
    this.queue.push({ chunk, dueAt: this.clock.now() + this.delayMs })
    if (this.queue.length - this.head === 1) this.schedule()
  }

  private schedule (): void {
    if (this.cancelTimer !== undefined || this.waitingDrain || this.done) return
    const next = this.queue[this.head]
    if (next === undefined) return
    // Timers fire on libuv's millisecond clock, which may run slightly behind
    // performance.now(): round up and re-check, so a chunk is never early.
    const waitMs = Math.max(1, Math.ceil(next.dueAt - this.clock.now()))
    this.cancelTimer = this.clock.setTimeout(() => {
      this.cancelTimer = undefined
      this.release()
    }, waitMs)
  }

  private release (): void {
    if (this.done || this.waitingDrain) return
    const now = this.clock.now()
    let next = this.queue[this.head]
    while (next !== undefined && next.dueAt <= now) {
      this.head++
      if (next.chunk === null) {
        this.done = true
        this.dst.end()
        break
      }
      this.held -= next.chunk.length
      this.stats.inFlightBytes -= next.chunk.length
      this.stats.bytesForwarded += next.chunk.length
      if (!this.dst.write(next.chunk)) {
        this.waitingDrain = true
        break
      }
      next = this.queue[this.head]
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head)
      this.head = 0
    }
    if (this.held < this.capBytes && this.src.isPaused() && !this.src.readableEnded) this.src.resume()
    this.schedule()
  }

  /** Drops whatever is held (the connection was destroyed). */
  discard (): void {
    this.cancelTimer?.()
    this.cancelTimer = undefined
    this.done = true
    this.stats.inFlightBytes -= this.held
    this.held = 0
    this.queue.length = 0
    this.head = 0
  }
}

/**
 * Starts a TCP relay on 127.0.0.1:0 that emulates a long link (this kernel has no netem):
 * each chunk is held `oneWayDelayMs` in each direction, and at most the link's
 * bandwidth-delay product is held per direction (the source socket is paused above it).
 * Destination backpressure, half-close (FIN after the held data) and destroy propagate.
 */
export async function createDelayLink (options: DelayLinkOptions): Promise<DelayLink> {
  const oneWayDelayMs = options.oneWayDelayMs ?? DELAY_LINK_DEFAULTS.oneWayDelayMs
  const bandwidthBytesPerSec = options.bandwidthBytesPerSec ?? DELAY_LINK_DEFAULTS.bandwidthBytesPerSec
  const clock = options.clock ?? REAL_CLOCK
  if (!(oneWayDelayMs >= 0) || !(bandwidthBytesPerSec > 0)) {
    throw new RangeError(`createDelayLink: oneWayDelayMs must be >= 0 and bandwidthBytesPerSec > 0, got ${oneWayDelayMs} and ${bandwidthBytesPerSec}`)
  }
  const capBytes = Math.max(1, Math.round(bandwidthBytesPerSec * 2 * oneWayDelayMs / 1000))
  const stats: DelayLinkStats = {
    connections: 0,
    bytesForwarded: 0,
    inFlightBytes: 0,
    peakInFlightBytes: 0,
    maxInFlightBytes: capBytes,
    sourcePauses: 0,
  }
  const sockets = new Set<Socket>()
  const track = (socket: Socket): void => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    stats.connections++
    const upstream = createConnection({ host: options.target.host, port: options.target.port, allowHalfOpen: true, noDelay: true })
    client.setNoDelay(true)
    track(client)
    track(upstream)
    const forward = new DelayedDirection(client, upstream, oneWayDelayMs, capBytes, stats, clock)
    const backward = new DelayedDirection(upstream, client, oneWayDelayMs, capBytes, stats, clock)
    // A socket that closes without a clean FIN both ways (error, destroy, RST)
    // takes its partner down at once: the emulated link was cut.
    const propagate = (from: Socket, to: Socket) => (hadError: boolean): void => {
      if (hadError || !from.readableEnded || !from.writableFinished) {
        forward.discard()
        backward.discard()
        if (to.destroyed) return
        if (to.connecting) to.destroy()
        else to.resetAndDestroy()
      }
    }
    client.on('close', propagate(client, upstream))
    upstream.on('close', propagate(upstream, client))
    // Errors end in 'close' above; without a listener they would crash the process.
    client.on('error', () => {})
    upstream.on('error', () => {})
  })

  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo

  let closing: Promise<void> | undefined
  return {
    port,
    stats,
    close: async () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        for (const socket of sockets) socket.destroy()
      })
      return closing
    },
  }
}

/** Two ends of one TCP connection through a {@link createDelayLink}, and the link (its stats, its close). */
export interface DelayedSocketPair {
  /** `[dialed, accepted]`: the dialed end connects to the link, the accepted end is the link's target. */
  sockets: [Socket, Socket]
  link: DelayLink
  /** Closes the link, which destroys both ends. */
  close: () => Promise<void>
}

/** Like `socketPair()`, with a {@link createDelayLink} (same options, minus the target) in between. */
export async function delayedSocketPair (options: Omit<DelayLinkOptions, 'target'> = {}): Promise<DelayedSocketPair> {
  const target = createServer()
  target.listen(0, '127.0.0.1')
  await once(target, 'listening')
  const { port } = target.address() as AddressInfo
  const link = await createDelayLink({ ...options, target: { host: '127.0.0.1', port } })
  const accepted = once(target, 'connection')
  const dialed = createConnection({ host: '127.0.0.1', port: link.port })
  await once(dialed, 'connect')
  const [theirs] = await accepted as [Socket]
  target.close()
  return { sockets: [dialed, theirs], link, close: async () => { dialed.destroy(); await link.close() } }
}
