import { randomBytes } from 'node:crypto'
import { open, readFile, rm, stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConfigError, SpokesFileError } from './errors.js'

/** Options of {@link acquireSpokesFileLock}. */
export interface SpokesFileLockOptions {
  /** How long to wait for another edit to finish before giving up with `SLK_ERR_SPOKES_LOCK_TIMEOUT`. @default 10000 */
  lockTimeoutMs?: number
  /**
   * A lock older than this is taken to be abandoned (its owner hung or ran on another host) and is broken. A lock
   * whose owner process on this host is gone is broken at once, whatever its age.
   * @default 30000
   */
  staleLockMs?: number
  /** Pause between two attempts while another edit holds the lock (jittered ±50 %). @default 20 */
  retryIntervalMs?: number
}

/** Defaults of {@link SpokesFileLockOptions}. */
export const SPOKES_FILE_LOCK_DEFAULTS = {
  lockTimeoutMs: 10_000,
  staleLockMs: 30_000,
  retryIntervalMs: 20,
} as const satisfies Required<SpokesFileLockOptions>

/** A held spokes-file lock. */
export interface SpokesFileLock {
  /** Path of the lock file (`<spokes file>.lock`). */
  readonly path: string
  /**
   * Checks the lock file is still ours (not broken as stale by another process), just before a commit.
   * @throws {SpokesFileError} `SLK_ERR_SPOKES_LOCK_LOST`
   */
  assertHeld: () => Promise<void>
  /** Removes the lock file if it is still ours; idempotent. */
  release: () => Promise<void>
}

/** Seams for tests that need a race to happen at an exact point. */
export interface SpokesFileLockHooks {
  /** Runs after a lock was judged stale and before the attempt to break it (where another breaker can get in first). */
  beforeBreak?: () => Promise<void>
}

/** What a lock file says about its owner; written as one JSON line. */
interface LockOwner {
  pid: number
  host: string
  nonce: string
}

/**
 * Takes the lock of the spokes file at `path`: the file `<path>.lock`, created with `O_EXCL` so exactly one process
 * can hold it. While another process holds it, this waits up to `lockTimeoutMs`. A stale lock (its owner process on
 * this host is gone, or it is older than `staleLockMs`) is broken under a second lock, `<path>.lock.break`, after
 * checking it is still the very file (inode and content) judged stale; so two breakers cannot both win, and a new
 * owner's lock is never removed by a breaker that judged the old one.
 * @throws {SpokesFileError} `SLK_ERR_SPOKES_LOCK_TIMEOUT` when the lock stays held by a live owner for `lockTimeoutMs`
 * @throws {ConfigError} `SLK_ERR_CONFIG_INVALID_OPTION` for an out-of-range option
 */
export async function acquireSpokesFileLock (path: string, options: SpokesFileLockOptions = {}, hooks: SpokesFileLockHooks = {}): Promise<SpokesFileLock> {
  const { lockTimeoutMs, staleLockMs, retryIntervalMs } = validateSpokesFileLockOptions(options)
  const lockPath = `${path}.lock`
  const owner: LockOwner = { pid: process.pid, host: hostname(), nonce: randomBytes(12).toString('hex') }
  const content = `${JSON.stringify(owner)}\n`
  const deadline = Date.now() + lockTimeoutMs
  let heldBy: LockOwner | undefined
  for (;;) {
    if (await tryCreate(lockPath, content)) break
    const judged = await inspect(lockPath)
    if (judged === undefined) continue // released between our create and our look: try again at once
    heldBy = judged.owner
    if (isStale(judged, staleLockMs)) {
      await hooks.beforeBreak?.()
      if (await breakStaleLock(lockPath, judged, staleLockMs, content)) continue
      // Another process is breaking it right now: wait like for a live owner, then look again.
    }
    const left = deadline - Date.now()
    if (left <= 0) {
      const who = heldBy === undefined ? 'another process' : `process ${heldBy.pid} on ${heldBy.host}`
      throw new SpokesFileError('SLK_ERR_SPOKES_LOCK_TIMEOUT',
        `${path}: another edit (${who}) held ${lockPath} for more than ${lockTimeoutMs} ms; try again, or remove the lock file if no edit is running`)
    }
    await sleep(Math.min(left, retryIntervalMs * (0.5 + Math.random())))
  }

  let released = false
  const isOurs = async (): Promise<boolean> => (await readFile(lockPath, 'utf8').catch(() => '')) === content
  return {
    path: lockPath,
    async assertHeld () {
      if (!await isOurs()) {
        throw new SpokesFileError('SLK_ERR_SPOKES_LOCK_LOST', `${path}: the lock ${lockPath} was broken as stale by another process during this edit; nothing was written, try again`)
      }
    },
    async release () {
      if (released) return
      released = true
      if (await isOurs()) await rm(lockPath, { force: true })
    },
  }
}

/**
 * Validates lock options and fills in defaults.
 * @throws {ConfigError} `SLK_ERR_CONFIG_INVALID_OPTION` naming the option
 */
export function validateSpokesFileLockOptions (options: SpokesFileLockOptions): Required<SpokesFileLockOptions> {
  const resolved = { ...SPOKES_FILE_LOCK_DEFAULTS, ...options }
  for (const name of ['lockTimeoutMs', 'staleLockMs', 'retryIntervalMs'] as const) {
    const value = resolved[name]
    if (!Number.isInteger(value) || value < 0 || value > 2_147_483_647) {
      throw new ConfigError('SLK_ERR_CONFIG_INVALID_OPTION', `${name}: expected an integer number of milliseconds >= 0, got ${String(value)}`)
    }
  }
  return resolved
}

async function tryCreate (lockPath: string, content: string): Promise<boolean> {
  let file
  try {
    file = await open(lockPath, 'wx', 0o600)
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false
    throw new SpokesFileError('SLK_ERR_SPOKES_WRITE', `${lockPath}: cannot create the lock file (${errnoCode(err)})`, { cause: err })
  }
  try {
    await file.writeFile(content, 'utf8')
  } finally {
    await file.close()
  }
  return true
}

/** A lock file as seen once: what identifies that exact file, and its owner when its content could be parsed. */
interface LockSnapshot {
  ino: number
  mtimeMs: number
  text: string
  owner: LockOwner | undefined
}

async function inspect (lockPath: string): Promise<LockSnapshot | undefined> {
  try {
    const info = await stat(lockPath)
    const text = await readFile(lockPath, 'utf8')
    return { ino: info.ino, mtimeMs: info.mtimeMs, text, owner: parseOwner(text) }
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined
    throw new SpokesFileError('SLK_ERR_SPOKES_WRITE', `${lockPath}: cannot read the lock file (${errnoCode(err)})`, { cause: err })
  }
}

function isStale (lock: LockSnapshot, staleLockMs: number): boolean {
  if (Date.now() - lock.mtimeMs > staleLockMs) return true
  // A pid only means something on the host that wrote it; on a shared volume only the age counts.
  return lock.owner !== undefined && lock.owner.host === hostname() && !isProcessAlive(lock.owner.pid)
}

/**
 * Removes the stale lock `judged`, unless it was replaced meanwhile. Breakers take turns through a second lock,
 * `<lock>.break` (O_EXCL too, held for three file operations), and re-inspect the lock under it: only the very file
 * judged stale (same inode, same content) is removed, so a breaker that comes second never removes the lock a new
 * owner took after the first breaker. A live lock is never moved or touched, so its owner's `assertHeld()` stays
 * true. Returns false when another breaker holds the turn.
 */
async function breakStaleLock (lockPath: string, judged: LockSnapshot, staleLockMs: number, content: string): Promise<boolean> {
  const breakPath = `${lockPath}.break`
  if (!await tryCreate(breakPath, content)) {
    // A breaker that died holding its turn leaves the turn stale; judged like a lock (dead owner or old).
    const turn = await inspect(breakPath)
    if (turn !== undefined && isStale(turn, staleLockMs)) await removeIfSame(breakPath, turn)
    return false
  }
  try {
    await removeIfSame(lockPath, judged)
  } finally {
    await rm(breakPath, { force: true })
  }
  return true
}

async function removeIfSame (path: string, judged: LockSnapshot): Promise<void> {
  const now = await inspect(path)
  if (now !== undefined && now.ino === judged.ino && now.text === judged.text) await rm(path, { force: true })
}

function parseOwner (text: string): LockOwner | undefined {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== 'object' || value === null) return undefined
    const { pid, host, nonce } = value as Record<string, unknown>
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || typeof host !== 'string' || typeof nonce !== 'string') return undefined
    return { pid, host, nonce }
  } catch {
    // Empty (its owner is between create and write) or not ours: only its age can make it stale.
    return undefined
  }
}

function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return !isErrno(err, 'ESRCH')
  }
}

function isErrno (err: unknown, code: string): boolean {
  return err instanceof Error && 'code' in err && err.code === code
}

function errnoCode (err: unknown): string {
  return err instanceof Error && 'code' in err ? String(err.code) : 'unknown error'
}
