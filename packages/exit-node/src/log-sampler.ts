import type { Logger } from 'pino'

/** Options of a {@link LogSampler}. */
export interface LogSamplerOptions {
  /** Each key logs at most one full line per interval, then one line counting the rest. */
  intervalMs: number
}

type SampledLevel = 'info' | 'warn'

interface Window {
  logger: Logger
  level: SampledLevel
  msg: string
  endsAtMs: number
  repeated: number
}

/**
 * Rate-limits log lines that a peer can cause at will (refused upgrades, refused connections): per key, the first
 * event of an interval is logged in full and the others are only counted; when the interval ends, one line with the
 * same message carries `repeated: N`. Keys must come from a fixed set (reasons named in code, never peer input),
 * so the map stays small. Counts for dashboards are metrics; this only keeps the log readable and cheap.
 */
export class LogSampler {
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #windows = new Map<string, Window>()
  #timer: NodeJS.Timeout | undefined

  constructor (options: LogSamplerOptions, deps: { now?: () => number } = {}) {
    this.#intervalMs = options.intervalMs
    this.#now = deps.now ?? Date.now
  }

  /** Logs `msg` with `fields` unless `key` already logged in this interval, in which case it is counted. */
  log (logger: Logger, level: SampledLevel, key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.#now()
    const open = this.#windows.get(key)
    if (open !== undefined && now < open.endsAtMs) {
      open.repeated++
      return
    }
    if (open !== undefined) this.#summarise(key, open)
    logger[level]({ ...fields, sampleKey: key }, msg)
    this.#windows.set(key, { logger, level, msg, endsAtMs: now + this.#intervalMs, repeated: 0 })
    this.#timer ??= setInterval(() => { this.#flush(false) }, this.#intervalMs).unref()
  }

  /** Logs every pending count now and stops the timer. */
  close (): void {
    this.#flush(true)
  }

  #flush (all: boolean): void {
    const now = this.#now()
    for (const [key, window] of this.#windows) {
      if (all || now >= window.endsAtMs) this.#summarise(key, window)
    }
    if (this.#windows.size === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  #summarise (key: string, window: Window): void {
    this.#windows.delete(key)
    if (window.repeated > 0) window.logger[window.level]({ sampleKey: key, repeated: window.repeated, intervalMs: this.#intervalMs }, window.msg)
  }
}
