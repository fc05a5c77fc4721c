import type { Socket } from 'node:net'

/** Bytes one spoke's data plane carried; `in` is towards the spoke (read from clients), `out` back to them. */
export interface SpokeTraffic {
  in: number
  out: number
}

interface Tracked {
  spoke: string
  read: number
  written: number
}

/**
 * Counts data-plane bytes while connections are open, not when they close: a hub Prometheus keeps one keep-alive
 * connection per target for hours, and counting at close would show nothing until then. It costs nothing per chunk:
 * `flush()` (called before every scrape and when a connection ends) adds each open socket's `bytesRead` and
 * `bytesWritten` growth since the last flush.
 */
export class TrafficMeter {
  readonly #open = new Map<Socket, Tracked>()
  readonly #totals = new Map<string, SpokeTraffic>()
  readonly #onBytes: (spoke: string, direction: 'in' | 'out', bytes: number) => void

  /** `onBytes` hears every flushed delta (the prom-client counter's `inc`). */
  constructor (onBytes: (spoke: string, direction: 'in' | 'out', bytes: number) => void) {
    this.#onBytes = onBytes
  }

  /** Starts counting `socket` for `spoke`; the returned function flushes it one last time and stops. */
  track (socket: Socket, spoke: string): () => void {
    const tracked: Tracked = { spoke, read: 0, written: 0 }
    this.#open.set(socket, tracked)
    return () => {
      this.#flushOne(socket, tracked)
      this.#open.delete(socket)
    }
  }

  /** Adds every open connection's bytes since the last flush. */
  flush (): void {
    for (const [socket, tracked] of this.#open) this.#flushOne(socket, tracked)
  }

  /** Bytes each spoke carried since start (after a {@link TrafficMeter.flush}). */
  totalOf (spoke: string): SpokeTraffic {
    return this.#totals.get(spoke) ?? { in: 0, out: 0 }
  }

  /** Forgets a spoke removed from the spokes file. */
  forget (spoke: string): void {
    this.#totals.delete(spoke)
  }

  #flushOne (socket: Socket, tracked: Tracked): void {
    const read = socket.bytesRead - tracked.read
    const written = socket.bytesWritten - tracked.written
    if (read === 0 && written === 0) return
    tracked.read += read
    tracked.written += written
    let total = this.#totals.get(tracked.spoke)
    if (total === undefined) {
      total = { in: 0, out: 0 }
      this.#totals.set(tracked.spoke, total)
    }
    total.in += read
    total.out += written
    if (read > 0) this.#onBytes(tracked.spoke, 'in', read)
    if (written > 0) this.#onBytes(tracked.spoke, 'out', written)
  }
}
