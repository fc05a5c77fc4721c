import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { ConnectionBudget } from './connection-budget.js'
import type { ConnectionRefusal, ConnectionSlot } from './connection-budget.js'
import type { ExitNodeErrorCode } from './errors.js'
import { FailedAuthLimiter } from './failed-auth-limiter.js'
import { createFrontDoorMetrics } from './front-door-metrics.js'
import type { FrontDoorMetrics } from './front-door-metrics.js'
import { LogSampler } from './log-sampler.js'
import { readOpenFileLimit } from './open-file-limit.js'
import type { OpenFileLimit } from './open-file-limit.js'
import { rejectUpgrade } from './reject-upgrade.js'
import { sourceKeyOf } from './source-address.js'

/** Limits of the control port's front door; the exit-node passes its options through. */
export interface FrontDoorOptions {
  maxUnauthenticatedConnections: number
  maxUnauthenticatedPerSource: number
  failedAuthBurst: number
  failedAuthRefillMs: number
  maxFailedAuthSources: number
  logSampleIntervalMs: number
  /** How long a refused upgrade's socket may linger if the peer does not read the answer. */
  refusalCloseTimeoutMs: number
  /**
   * Longest life of a connection whose upgrade is not accepted: the TLS handshake and headers timeouts plus one
   * check interval. Node enforces those two itself, but only on a periodic check that a loaded event loop can
   * postpone; this per-connection deadline makes the bound hold whatever Node's check does.
   */
  unauthenticatedDeadlineMs: number
}

/** An unauthenticated connection's slot, its deadline and whether its TLS handshake finished. */
interface HeldConnection {
  slot: ConnectionSlot
  deadline: NodeJS.Timeout
  secured: boolean
}

/** What {@link FrontDoor} needs from the exit-node. */
export interface FrontDoorDeps {
  logger: Logger
  registry: Registry
  /** Milliseconds for the failed-auth buckets; the exit-node's injected clock. */
  nowMs: () => number
  /** @default reads /proc/self/limits */
  readOpenFileLimit?: () => OpenFileLimit | undefined
}

/** A refused upgrade: the plain HTTP answer and the sampled log line. */
export interface UpgradeRefusal {
  status: number
  /** One line for the peer and the log; never a secret. */
  reason: string
  /** Sampling key and log `reason` field, from a fixed set (never peer input). */
  logReason: string
  msg: string
  fields?: Record<string, unknown>
  headers?: Record<string, string>
}

/** The code each refusal at accept logs, for operators to grep and docs/errors.md to explain. */
const REFUSAL_CODES: Record<ConnectionRefusal, ExitNodeErrorCode> = {
  unauthenticated_limit: 'SLK_ERR_EXIT_UNAUTHENTICATED_LIMIT',
  unauthenticated_source_limit: 'SLK_ERR_EXIT_UNAUTHENTICATED_SOURCE_LIMIT',
}

/** File descriptors the process needs besides its unauthenticated connections (sessions, data plane, files). */
const FD_HEADROOM = 1024

/**
 * The control port's defences before a session exists: a cap on connections whose upgrade is not accepted yet
 * (global and per source, closed at accept when full), the per-source failed-auth budget (429 + Retry-After), the
 * timeout counters and sampled refusal logs. The exit-node decides what to refuse; this decides what it costs.
 */
export class FrontDoor {
  readonly #options: Readonly<FrontDoorOptions>
  readonly #log: Logger
  readonly #nowMs: () => number
  readonly #readOpenFileLimit: () => OpenFileLimit | undefined
  readonly #metrics: FrontDoorMetrics
  readonly #unauthenticated: ConnectionBudget
  /** Each unauthenticated connection, by `address|port` (the same for the TCP and the TLS socket). */
  readonly #held = new Map<string, HeldConnection>()
  readonly #failedAuth: FailedAuthLimiter
  /** Sampled log lines of refusals; the exit-node's other refusals use it too. */
  readonly sampler: LogSampler

  constructor (options: FrontDoorOptions, deps: FrontDoorDeps) {
    this.#options = Object.freeze({ ...options })
    this.#log = deps.logger
    this.#nowMs = deps.nowMs
    this.#readOpenFileLimit = deps.readOpenFileLimit ?? readOpenFileLimit
    this.#metrics = createFrontDoorMetrics(deps.registry)
    this.#unauthenticated = new ConnectionBudget({ maxConnections: options.maxUnauthenticatedConnections, maxPerSource: options.maxUnauthenticatedPerSource })
    this.#failedAuth = new FailedAuthLimiter({ burst: options.failedAuthBurst, refillMs: options.failedAuthRefillMs, maxSources: options.maxFailedAuthSources })
    this.sampler = new LogSampler({ intervalMs: options.logSampleIntervalMs })
  }

  /** Counts connections and timeouts of `server` (http or https). */
  attach (server: Server): void {
    // Counted on the raw TCP socket, so a wss client holds its slot from accept through the TLS handshake.
    server.on('connection', (socket: Socket) => { this.#admit(socket, 'secureConnection' in server ? 'tls' : 'headers') })
    server.on('secureConnection', (socket: Socket) => {
      const held = this.#held.get(`${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`)
      if (held !== undefined) held.secured = true
    })
    // Garbage before the upgrade, TLS errors and half-sent requests cost one socket, nothing more.
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const phase = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'headers' : err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'tls' : undefined
      const { remoteAddress, remotePort } = socket as Partial<Socket>
      // Released now, not on 'close' (a tick later), so the deadline below cannot count this connection again; and
      // counted only if still held: on a loaded event loop Node's periodic check can run in the same timers phase
      // as the deadline, after the deadline counted and destroyed the socket but before 'close' removed it from
      // Node's list, and report the same connection a second time.
      const held = this.#releaseHeld(remoteAddress, remotePort)
      if (phase !== undefined && held) this.#timedOut(phase, remoteAddress)
      socket.destroy()
    })
  }

  #timedOut (phase: 'headers' | 'tls', remoteAddress: string | undefined): void {
    this.#metrics.timeoutsTotal.inc({ phase })
    const code: ExitNodeErrorCode = 'SLK_ERR_EXIT_HANDSHAKE_TIMEOUT'
    this.sampler.log(this.#log, 'warn', `timeout_${phase}`, { code, phase, remoteAddress }, 'connection timed out')
  }

  /** The connection from `remoteAddress:remotePort` was upgraded (or is being closed): it no longer counts as unauthenticated. */
  upgradeAccepted (remoteAddress: string | undefined, remotePort: number | undefined): void {
    this.#releaseHeld(remoteAddress, remotePort)
  }

  /** Releases the connection's slot and deadline; false when it held none (already released). */
  #releaseHeld (remoteAddress: string | undefined, remotePort: number | undefined): boolean {
    const key = `${remoteAddress ?? ''}|${remotePort ?? ''}`
    const held = this.#held.get(key)
    if (held === undefined) return false
    this.#release(key, held)
    return true
  }

  /** Answers a refused upgrade and closes the socket; the refusal spends the source's failed-auth budget (429 when none is left). */
  refuseUpgrade (socket: Duplex, remoteAddress: string | undefined, refusal: UpgradeRefusal): void {
    if (this.throttled(socket, remoteAddress)) return
    this.sampler.log(this.#log, 'warn', refusal.logReason, { remoteAddress, reason: refusal.reason, status: refusal.status, ...refusal.fields }, refusal.msg)
    rejectUpgrade(socket, refusal.status, refusal.reason, refusal.headers, this.#options.refusalCloseTimeoutMs)
  }

  /**
   * Spends one failed attempt of the peer's source. When it had none left, answers 429 with Retry-After, closes
   * the socket and returns true; otherwise the caller goes on with its own refusal.
   */
  throttled (socket: Duplex, remoteAddress: string | undefined): boolean {
    const source = sourceKeyOf(remoteAddress)
    const retryAfterMs = this.#failedAuth.charge(source, this.#nowMs())
    if (retryAfterMs === 0) return false
    this.#metrics.refusedTotal.inc({ reason: 'failed_auth_budget' })
    const code: ExitNodeErrorCode = 'SLK_ERR_EXIT_AUTH_THROTTLED'
    this.sampler.log(this.#log, 'warn', 'failed_auth_budget', { code, reason: 'failed_auth_budget', remoteAddress, source, retryAfterMs }, 'upgrade throttled')
    rejectUpgrade(socket, 429, 'too many refused attempts from this address', { 'Retry-After': String(Math.ceil(retryAfterMs / 1000)) }, this.#options.refusalCloseTimeoutMs)
    return true
  }

  /** Counts a session closed with 4429 (the exit-node logs it through {@link sampler}). */
  sessionRefused (): void {
    this.#metrics.refusedTotal.inc({ reason: 'session_limit' })
  }

  /** Logs RLIMIT_NOFILE (Node has already raised soft to hard) and warns when it cannot hold the connection cap. */
  logOpenFileLimit (): void {
    const limit = this.#readOpenFileLimit()
    if (limit === undefined) {
      this.#log.info('open file limit unknown (no /proc/self/limits)')
      return
    }
    const needed = this.#options.maxUnauthenticatedConnections + FD_HEADROOM
    this.#log.info({ soft: limit.soft, hard: limit.hard }, 'open file limit')
    if (limit.soft < needed) {
      this.#log.warn({ soft: limit.soft, hard: limit.hard, needed }, 'open file limit is below the unauthenticated connection cap + 1024; raise the hard limit (ulimit -Hn) or lower --max-unauthenticated')
    }
  }

  /** Logs the counts of sampled lines still pending. */
  close (): void {
    this.sampler.close()
  }

  #admit (socket: Socket, firstPhase: 'headers' | 'tls'): void {
    const { remoteAddress, remotePort } = socket
    if (remoteAddress === undefined || remotePort === undefined) {
      // Already reset by the peer: nothing to serve, nothing to count.
      socket.destroy()
      return
    }
    const source = sourceKeyOf(remoteAddress)
    const slot = this.#unauthenticated.tryTake(source)
    if (typeof slot === 'string') {
      this.#metrics.refusedTotal.inc({ reason: slot })
      this.sampler.log(this.#log, 'warn', slot, { code: REFUSAL_CODES[slot], reason: slot, remoteAddress, source, held: this.#unauthenticated.size }, 'connection refused')
      socket.destroy()
      return
    }
    const key = `${remoteAddress}|${remotePort}`
    const deadline = setTimeout(() => {
      if (this.#held.get(key) !== held) return
      this.#release(key, held)
      this.#timedOut(held.secured ? 'headers' : firstPhase, remoteAddress)
      socket.destroy()
    }, this.#options.unauthenticatedDeadlineMs).unref()
    const held: HeldConnection = { slot, deadline, secured: false }
    this.#held.set(key, held)
    this.#metrics.unauthenticated.set(this.#unauthenticated.size)
    socket.once('close', () => { this.#release(key, held) })
  }

  #release (key: string, held: HeldConnection): void {
    if (this.#held.get(key) !== held) return
    clearTimeout(held.deadline)
    this.#unauthenticated.release(held.slot)
    this.#held.delete(key)
    this.#metrics.unauthenticated.set(this.#unauthenticated.size)
  }
}
