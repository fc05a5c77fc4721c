import net from 'node:net'
import { MuxError } from './errors.js'

/** Options of a {@link ReadBufferPool}. */
export interface ReadBufferPoolOptions {
  /** Size of each read buffer: the most one socket read delivers (Node's own reads are 64 KiB). @default 65536 */
  readBufferBytes?: number
  /** Free buffers the pool keeps for reuse; a read while none is free gets a fresh buffer. @default 32 */
  maxPooledReadBuffers?: number
}

/** Defaults of {@link ReadBufferPoolOptions}. */
export const READ_BUFFER_POOL_DEFAULTS = Object.freeze({ readBufferBytes: 64 * 1024, maxPooledReadBuffers: 32 } as const satisfies Required<ReadBufferPoolOptions>)

/** One pool buffer while it is out of the free list. */
interface Lease {
  readonly buffer: Buffer
  /** Puts it back on its pool's free list (or lets it go when that list is full). */
  readonly recycle: (lease: Lease) => void
  /** The socket's handle may still write into it (it is the buffer of the next read). */
  armed: boolean
  /** Bytes of it handed on by a read and not yet reported written by {@link releaseWritten}. */
  outstanding: number
}

// Keyed by the backing store: a view of any part of a pool buffer (a mux stream cuts a read into frames) finds its lease.
const leases = new WeakMap<ArrayBufferLike, Lease>()

/**
 * Fixed-size buffers that sockets read into (`net.connect({ onread })`) and get back once every byte read
 * into one was written on (the writer calls {@link releaseWritten} from its write callback). Without it each
 * socket read allocates a fresh 64 KiB Buffer; V8 runs a scavenge for every 32 MiB of such young backing
 * stores and promotes any still in flight, so a bulk transfer paid a scavenge per 32 MiB and, now and then,
 * mark-compacts. A buffer whose bytes are dropped, copied or never reported written is simply not reused
 * (the garbage collector frees it like any Buffer): reuse depends on the writer, correctness does not.
 */
export class ReadBufferPool {
  readonly readBufferBytes: number
  readonly maxPooledReadBuffers: number
  readonly #free: Lease[] = []
  #allocated = 0
  #reused = 0

  /** @throws MuxError `SLK_ERR_MUX_INVALID_OPTION` for a size or count that is not a positive integer (count: ≥ 0). */
  constructor (options: ReadBufferPoolOptions = {}) {
    const { readBufferBytes, maxPooledReadBuffers } = { ...READ_BUFFER_POOL_DEFAULTS, ...options }
    if (!Number.isInteger(readBufferBytes) || readBufferBytes < 1) {
      throw new MuxError('SLK_ERR_MUX_INVALID_OPTION', `read buffer pool option readBufferBytes: expected a positive integer, got ${String(readBufferBytes)}`)
    }
    if (!Number.isInteger(maxPooledReadBuffers) || maxPooledReadBuffers < 0) {
      throw new MuxError('SLK_ERR_MUX_INVALID_OPTION', `read buffer pool option maxPooledReadBuffers: expected an integer ≥ 0, got ${String(maxPooledReadBuffers)}`)
    }
    this.readBufferBytes = readBufferBytes
    this.maxPooledReadBuffers = maxPooledReadBuffers
  }

  /** Free buffers waiting for a read; never above `maxPooledReadBuffers`. */
  get freeCount (): number {
    return this.#free.length
  }

  /** Buffers allocated since the start (a read found none free). */
  get allocatedCount (): number {
    return this.#allocated
  }

  /** Reads that went into a reused buffer since the start. */
  get reusedCount (): number {
    return this.#reused
  }

  /**
   * `net.connect(options)` with the socket reading into this pool's buffers. The socket stays an ordinary
   * Readable ('data', pause/resume, 'end'): each read is pushed as a view of the buffer it went into.
   */
  connect (options: net.NetConnectOpts): net.Socket {
    // The buffer the socket's handle reads into next: not free until the socket is closed.
    let armed: Lease | undefined
    const socket = net.connect({
      ...options,
      onread: {
        // Node asks for the first buffer when the handle is set up and for the next one after each read.
        buffer: () => {
          armed = this.#arm()
          return armed.buffer
        },
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          const lease = leases.get(buffer.buffer)
          if (lease !== undefined) {
            lease.armed = false
            lease.outstanding = bytes
          }
          return socket.push(Buffer.from(buffer.buffer, buffer.byteOffset, bytes))
        },
      },
    })
    socket.once('close', () => {
      if (armed?.armed === true) this.#recycle(armed)
      armed = undefined
    })
    return socket
  }

  #arm (): Lease {
    const lease = this.#free.pop()
    if (lease !== undefined) {
      this.#reused++
      lease.armed = true
      return lease
    }
    this.#allocated++
    const fresh: Lease = { buffer: Buffer.allocUnsafeSlow(this.readBufferBytes), recycle: this.#recycle, armed: true, outstanding: 0 }
    leases.set(fresh.buffer.buffer, fresh)
    return fresh
  }

  readonly #recycle = (lease: Lease): void => {
    lease.armed = false
    lease.outstanding = 0
    if (this.#free.length < this.maxPooledReadBuffers) this.#free.push(lease)
    else leases.delete(lease.buffer.buffer)
  }
}

let shared: ReadBufferPool | undefined

/**
 * One pool with the default sizes for the whole process: many agents in one process (a fleet
 * simulation, a multi-tenant host) then keep at most `maxPooledReadBuffers` free buffers between
 * them, not each.
 */
export function sharedReadBufferPool (): ReadBufferPool {
  shared ??= new ReadBufferPool()
  return shared
}

/**
 * Reports `chunk` written: the socket took it and nothing holds it any more. If it is a view of a
 * {@link ReadBufferPool} buffer, its bytes stop counting as in flight, and a buffer with none left goes
 * back to its pool for another read. A no-op for any other Buffer. Call it from the write callback, never
 * before: a buffer recycled while a write still holds it would be overwritten by the next read.
 */
export function releaseWritten (chunk: Buffer): void {
  const lease = leases.get(chunk.buffer)
  if (lease === undefined || lease.armed || lease.outstanding <= 0) return
  lease.outstanding -= chunk.length
  if (lease.outstanding <= 0) lease.recycle(lease)
}
