import { MuxError } from '../errors.js'
import type { CancelTimer, MuxClock } from './clock.js'
import { FLAG, FRAME_TYPE } from './frame.js'
import type { FrameSink } from './outbound-queue.js'

/** Options of {@link Pinger.ping}. */
export interface MuxPingOptions {
  signal?: AbortSignal
  /** @default MuxSessionOptions.pingTimeoutMs */
  timeoutMs?: number
}

interface PendingPing {
  start: number
  resolve: (rttMs: number) => void
  reject: (err: Error) => void
  cancelTimer: CancelTimer
  cleanup: () => void
}

/** Our PINGs and their answers: round-trip times and ping timeouts (spec "Ping"). */
export class Pinger {
  readonly #sink: Pick<FrameSink, 'sendFrame'>
  readonly #clock: MuxClock
  readonly #defaultTimeoutMs: number
  readonly #onRtt: (rttMs: number) => void
  readonly #pending = new Map<number, PendingPing>()
  #nextId = 0
  #rttMs: number | undefined

  /** `onRtt` hears every answered ping's round-trip time. */
  constructor (sink: Pick<FrameSink, 'sendFrame'>, clock: MuxClock, defaultTimeoutMs: number, onRtt: (rttMs: number) => void) {
    this.#sink = sink
    this.#clock = clock
    this.#defaultTimeoutMs = defaultTimeoutMs
    this.#onRtt = onRtt
  }

  /** The last measured round-trip time, if any ping was answered. */
  get rttMs (): number | undefined {
    return this.#rttMs
  }

  /**
   * Sends a PING and resolves with the round-trip time once the peer answers it.
   * @throws MuxError `SLK_ERR_MUX_PING_TIMEOUT`; or the signal's reason.
   */
  async ping (options: MuxPingOptions = {}): Promise<number> {
    const { signal } = options
    signal?.throwIfAborted()
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs
    const id = this.#nextId
    this.#nextId = (this.#nextId + 1) >>> 0
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        pending.cleanup()
        reject(signal?.reason)
      }
      const pending: PendingPing = {
        start: this.#clock.now(),
        resolve,
        reject,
        cancelTimer: this.#clock.setTimeout(() => {
          pending.cleanup()
          reject(new MuxError('SLK_ERR_MUX_PING_TIMEOUT', `peer did not answer ping ${id} within ${timeoutMs} ms`))
        }, timeoutMs),
        cleanup: () => {
          pending.cancelTimer()
          signal?.removeEventListener('abort', onAbort)
          this.#pending.delete(id)
        },
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#pending.set(id, pending)
      this.#sink.sendFrame(FRAME_TYPE.PING, FLAG.SYN, 0, id)
    })
  }

  /** The peer answered ping `id` (a PING with ACK); an answer after its timeout is ignored. */
  handleAnswer (id: number): void {
    const pending = this.#pending.get(id)
    if (pending === undefined) return
    pending.cleanup()
    const rtt = this.#clock.now() - pending.start
    this.#rttMs = rtt
    pending.resolve(rtt)
    this.#onRtt(rtt)
  }

  /** Rejects every ping still waiting for its answer (the session ended). */
  rejectAll (err: Error): void {
    for (const pending of [...this.#pending.values()]) {
      pending.cleanup()
      pending.reject(err)
    }
  }
}
