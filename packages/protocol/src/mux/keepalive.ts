import { MuxError } from '../errors.js'
import type { CancelTimer, MuxClock } from './clock.js'

/** Timers of a {@link Keepalive} (the session's options of the same names). */
export interface KeepaliveOptions {
  keepaliveIntervalMs: number
  keepaliveTimeoutMs: number
}

/**
 * Finds a dead peer: anything the peer sends proves it alive, and a peer silent for `keepaliveTimeoutMs`
 * is declared dead. Pings every `keepaliveIntervalMs` (or every half timeout, if that is shorter) make a
 * live but idle peer send something. The deadline runs from the last bytes received, not from a ping
 * sent, so a dead peer is found exactly `keepaliveTimeoutMs` after it last spoke (2 × the interval with
 * the defaults) and a busy peer whose pong is stuck behind its data is not declared dead.
 */
export class Keepalive {
  readonly #clock: MuxClock
  readonly #timeoutMs: number
  readonly #pingEveryMs: number
  readonly #ping: () => Promise<unknown>
  readonly #onDead: (err: MuxError) => void
  #lastHeardAt: number
  #nextPingAt: number
  #pingInFlight = false
  #cancelTimer: CancelTimer | undefined
  #stopped = false

  /** Starts at once: the peer counts as heard now. `ping` sends one keepalive ping; `onDead` is called once. */
  constructor (options: KeepaliveOptions, clock: MuxClock, ping: () => Promise<unknown>, onDead: (err: MuxError) => void) {
    this.#clock = clock
    this.#timeoutMs = options.keepaliveTimeoutMs
    this.#pingEveryMs = Math.max(1, Math.min(options.keepaliveIntervalMs, Math.floor(options.keepaliveTimeoutMs / 2)))
    this.#ping = ping
    this.#onDead = onDead
    const now = clock.now()
    this.#lastHeardAt = now
    this.#nextPingAt = now + this.#pingEveryMs
    this.#arm(now)
  }

  /** The peer sent something. Called per transport chunk: no timer work here, the tick reads the time. */
  heard (): void {
    this.#lastHeardAt = this.#clock.now()
  }

  /** Stops for good (the session ended). */
  stop (): void {
    this.#stopped = true
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
  }

  #arm (now: number): void {
    // The deadline only moves later (heard() never arms anything), so a timer armed for the earlier
    // of the next ping and the current deadline never fires late; a tick before the deadline re-arms.
    const at = Math.min(this.#nextPingAt, this.#lastHeardAt + this.#timeoutMs)
    this.#cancelTimer = this.#clock.setTimeout(this.#tick, Math.max(0, at - now))
  }

  readonly #tick = (): void => {
    this.#cancelTimer = undefined
    if (this.#stopped) return
    const now = this.#clock.now()
    const silentMs = now - this.#lastHeardAt
    if (silentMs >= this.#timeoutMs) {
      this.#stopped = true
      this.#onDead(new MuxError('SLK_ERR_MUX_KEEPALIVE_TIMEOUT', `peer sent nothing for ${Math.round(silentMs)} ms (keepaliveTimeoutMs ${this.#timeoutMs})`))
      return
    }
    if (now >= this.#nextPingAt) {
      this.#nextPingAt = now + this.#pingEveryMs
      if (!this.#pingInFlight) {
        this.#pingInFlight = true
        // The answer only refreshes the RTT (and proves liveness through heard()); an unanswered ping is no verdict.
        const done = (): void => { this.#pingInFlight = false }
        this.#ping().then(done, done)
      }
    }
    this.#arm(now)
  }
}
