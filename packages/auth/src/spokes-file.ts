import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ConfigError } from './errors.js'
import { validateMs, watchFileChanges } from './file-change-trigger.js'
import { parseSpokesConfig, spokesConfigFingerprint } from './spokes-config.js'
import type { SpokesConfig } from './spokes-config.js'

/**
 * Reads and validates the spokes file at `path`.
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_READ` when the file cannot be read, `SLK_ERR_CONFIG_SPOKES_FILE`
 * when it is not a valid spokes file
 */
export async function loadSpokesFile (path: string): Promise<SpokesConfig> {
  return (await loadSpokesFileWithDigest(path)).config
}

/**
 * {@link loadSpokesFile}, plus the sha256 of the text it parsed, for {@link WatchSpokesFileOptions.initialTextSha256}.
 * @throws {ConfigError} like {@link loadSpokesFile}
 */
export async function loadSpokesFileWithDigest (path: string): Promise<{ config: SpokesConfig, textSha256: string }> {
  const text = await readSpokesText(path, readUtf8)
  return { config: parseSpokesConfig(text, path), textSha256: sha256Hex(text) }
}

/** Options of {@link watchSpokesFile}. */
export interface WatchSpokesFileOptions {
  /** Called with each new valid config whose content differs from the last one. */
  onChange: (config: SpokesConfig) => void
  /**
   * Called when the file cannot be read or is invalid (the last good config stays in force), or when `onChange`
   * throws. Called once per broken version of the file, not once per event.
   */
  onError: (err: ConfigError) => void
  /**
   * The config the caller already loaded: `onChange` then fires only when the file differs from it. Without it,
   * the first valid read is reported through `onChange`.
   */
  initial?: SpokesConfig
  /**
   * sha256 (hex) of the text `initial` was parsed from ({@link loadSpokesFileWithDigest}): a read of that same text
   * is then not parsed again. The watch's first read comes right after start-up, when a restarted exit-node is
   * taking its agents back; a 1,000-spoke file costs ~0.15–0.3 s of CPU to parse.
   */
  initialTextSha256?: string
  /**
   * Quiet time after a file-system event before the file is read, so a burst of events gives one read.
   * @default 100
   */
  debounceMs?: number
  /**
   * Interval of the stat poll that backs up `fs.watch` (which misses events on some file systems).
   * @default 1000
   */
  pollIntervalMs?: number
  /**
   * Interval of a full re-read whatever the events and the stat poll say; the text's sha256 decides whether anything
   * changed. It catches a change both missed (a rewrite keeping size and mtime, an event lost to a busy process).
   * @default 30000
   */
  rereadIntervalMs?: number
  /**
   * First delay before a failed read (`EMFILE` when the process is out of file descriptors, `EACCES` mid-rotation…)
   * is retried; it doubles up to `retryMaxMs` and is retried until a read succeeds, so a revocation written while the
   * file could not be read still takes effect once it can.
   * @default 100
   */
  retryInitialMs?: number
  /** Largest delay between two retries of a failed read: a revocation applies at most this long after reads recover. @default 2000 */
  retryMaxMs?: number
  /** Reads the file; injectable so tests can make reads fail and recover. @default fs.promises.readFile(path, 'utf8') */
  readFile?: (path: string) => Promise<string>
}

/** Defaults of {@link WatchSpokesFileOptions}. */
export const WATCH_SPOKES_FILE_DEFAULTS = {
  debounceMs: 100,
  pollIntervalMs: 1000,
  rereadIntervalMs: 30_000,
  retryInitialMs: 100,
  retryMaxMs: 2000,
} as const satisfies Required<Pick<WatchSpokesFileOptions, 'debounceMs' | 'pollIntervalMs' | 'rereadIntervalMs' | 'retryInitialMs' | 'retryMaxMs'>>

/** What one read of the spokes file came to. */
export type SpokesFileReadOutcome = 'changed' | 'unchanged' | 'failed'

/** A running spokes-file watch. */
export interface SpokesFileWatcher {
  /**
   * Reads the file now (SIGHUP), after any read already running: `'changed'` when `onChange` was called,
   * `'unchanged'` when the content is what is in force, `'failed'` when it could not be read or is invalid
   * (`onError` was told; the last good config stays).
   */
  reread: () => Promise<SpokesFileReadOutcome>
  /** Stops watching; idempotent. No callback runs after it returns. */
  close: () => void
}

/**
 * Watches the spokes file and reports each valid change. It watches the file's *directory* with `fs.watch`, because
 * Kubernetes Secret volumes swap a `..data` symlink and editors save by rename, both of which replace the file the
 * watch would otherwise be stuck on; a cheap `stat` poll (device, inode, size, mtime) backs it up, and a full
 * re-read every `rereadIntervalMs` backs up both. The file is read once per burst of events (`debounceMs`), and
 * `onChange` fires only when the parsed content changed. A read that fails is retried with doubling delays
 * (`retryInitialMs` … `retryMaxMs`) until one succeeds. A broken file calls `onError` and keeps the last good
 * config. Timers are `unref()`ed and the fs watcher is not persistent, so the watch never keeps the process alive.
 * @throws {ConfigError} `SLK_ERR_CONFIG_INVALID_OPTION` when a delay option is out of range
 */
export function watchSpokesFile (path: string, options: WatchSpokesFileOptions): SpokesFileWatcher {
  const debounceMs = options.debounceMs ?? WATCH_SPOKES_FILE_DEFAULTS.debounceMs
  const pollIntervalMs = options.pollIntervalMs ?? WATCH_SPOKES_FILE_DEFAULTS.pollIntervalMs
  const rereadIntervalMs = options.rereadIntervalMs ?? WATCH_SPOKES_FILE_DEFAULTS.rereadIntervalMs
  const retryInitialMs = options.retryInitialMs ?? WATCH_SPOKES_FILE_DEFAULTS.retryInitialMs
  const retryMaxMs = options.retryMaxMs ?? WATCH_SPOKES_FILE_DEFAULTS.retryMaxMs
  const read = options.readFile ?? readUtf8
  validateMs('debounceMs', debounceMs, 0)
  validateMs('pollIntervalMs', pollIntervalMs, 1)
  validateMs('rereadIntervalMs', rereadIntervalMs, 1)
  validateMs('retryInitialMs', retryInitialMs, 1)
  validateMs('retryMaxMs', retryMaxMs, retryInitialMs)

  let closed = false
  let lastTextSha256: string | undefined = options.initialTextSha256
  let lastTextInvalid = false
  let lastFingerprint = options.initial === undefined ? undefined : spokesConfigFingerprint(options.initial)
  let lastReadError: string | undefined
  let retryDelayMs = retryInitialMs
  let retry: NodeJS.Timeout | undefined
  // Reads run one at a time; a request made while one runs queues exactly one more, which covers every request
  // made meanwhile (they all want "a read that starts after now").
  let queued: Promise<SpokesFileReadOutcome> | undefined
  let chain: Promise<unknown> = Promise.resolve()

  const report = (err: unknown): void => {
    if (closed) return
    try {
      options.onError(err instanceof ConfigError
        ? err
        : new ConfigError('SLK_ERR_CONFIG_SPOKES_READ', `${path}: spokes file change handler failed`, { cause: err }))
    } catch {
      // onError is the last resort: a throwing handler must neither stop the watch nor become an unhandled rejection.
    }
  }

  const check = async (): Promise<SpokesFileReadOutcome> => {
    if (queued !== undefined) return queued
    const next = chain.then(async () => {
      queued = undefined
      return closed ? 'unchanged' : checkOnce()
    })
    queued = next
    chain = next.catch(() => { /* checkOnce reports its own errors */ })
    return next
  }

  const scheduleRetry = (): void => {
    if (closed || retry !== undefined) return
    retry = setTimeout(() => {
      retry = undefined
      void check()
    }, retryDelayMs)
    retry.unref()
    retryDelayMs = Math.min(retryMaxMs, retryDelayMs * 2)
  }

  const checkOnce = async (): Promise<SpokesFileReadOutcome> => {
    let text: string
    try {
      text = await readSpokesText(path, read)
    } catch (err) {
      if (closed) return 'failed'
      const message = err instanceof Error ? err.message : String(err)
      if (message !== lastReadError) report(err)
      lastReadError = message
      lastTextSha256 = undefined // re-evaluate whatever comes back, even identical text
      scheduleRetry()
      return 'failed'
    }
    lastReadError = undefined
    retryDelayMs = retryInitialMs
    if (retry !== undefined) clearTimeout(retry)
    retry = undefined
    const textSha256 = sha256Hex(text)
    if (closed) return 'unchanged'
    if (textSha256 === lastTextSha256) return lastTextInvalid ? 'failed' : 'unchanged'
    lastTextSha256 = textSha256
    lastTextInvalid = false
    let config: SpokesConfig
    try {
      config = parseSpokesConfig(text, path)
    } catch (err) {
      lastTextInvalid = true
      report(err)
      return 'failed'
    }
    const fingerprint = spokesConfigFingerprint(config)
    if (fingerprint === lastFingerprint) return 'unchanged'
    lastFingerprint = fingerprint
    try {
      options.onChange(config)
    } catch (err) {
      report(err)
    }
    return 'changed'
  }

  // The first poll is the first read (and a baseline for the next polls).
  const trigger = watchFileChanges([path], { debounceMs, pollIntervalMs, rereadIntervalMs, onCheck: () => { void check() } })

  return {
    reread: check,
    close () {
      if (closed) return
      closed = true
      trigger.close()
      if (retry !== undefined) clearTimeout(retry)
    },
  }
}

function sha256Hex (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

async function readUtf8 (path: string): Promise<string> {
  return readFile(path, 'utf8')
}

async function readSpokesText (path: string, read: (path: string) => Promise<string>): Promise<string> {
  try {
    return await read(path)
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : 'unknown error'
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_READ', `${path}: cannot read the spokes file (${code})`, { cause: err })
  }
}
