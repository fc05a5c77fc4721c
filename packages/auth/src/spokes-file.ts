import { watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ConfigError } from './errors.js'
import { parseSpokesConfig, spokesConfigFingerprint } from './spokes-config.js'
import type { SpokesConfig } from './spokes-config.js'

/**
 * Reads and validates the spokes file at `path`.
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_READ` when the file cannot be read, `SLK_ERR_CONFIG_SPOKES_FILE`
 * when it is not a valid spokes file
 */
export async function loadSpokesFile (path: string): Promise<SpokesConfig> {
  return parseSpokesConfig(await readSpokesText(path), path)
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
   * Quiet time after a file-system event before the file is read, so a burst of events gives one read.
   * @default 100
   */
  debounceMs?: number
  /**
   * Interval of the stat poll that backs up `fs.watch` (which misses events on some file systems).
   * @default 1000
   */
  pollIntervalMs?: number
}

/** Defaults of {@link WatchSpokesFileOptions}. */
export const WATCH_SPOKES_FILE_DEFAULTS = {
  debounceMs: 100,
  pollIntervalMs: 1000,
} as const satisfies Required<Pick<WatchSpokesFileOptions, 'debounceMs' | 'pollIntervalMs'>>

/** A running spokes-file watch. */
export interface SpokesFileWatcher {
  /** Stops watching; idempotent. No callback runs after it returns. */
  close: () => void
}

/**
 * Watches the spokes file and reports each valid change. It watches the file's *directory* with `fs.watch`, because
 * Kubernetes Secret volumes swap a `..data` symlink and editors save by rename, both of which replace the file the
 * watch would otherwise be stuck on; a cheap `stat` poll (device, inode, size, mtime) backs it up. The file is read
 * once per burst of events (`debounceMs`), and `onChange` fires only when the parsed content changed. A broken file
 * calls `onError` and keeps the last good config. Timers are `unref()`ed and the fs watcher is not persistent, so
 * the watch never keeps the process alive.
 * @throws {ConfigError} `SLK_ERR_CONFIG_INVALID_OPTION` when `debounceMs` or `pollIntervalMs` is out of range
 */
export function watchSpokesFile (path: string, options: WatchSpokesFileOptions): SpokesFileWatcher {
  const debounceMs = options.debounceMs ?? WATCH_SPOKES_FILE_DEFAULTS.debounceMs
  const pollIntervalMs = options.pollIntervalMs ?? WATCH_SPOKES_FILE_DEFAULTS.pollIntervalMs
  validateMs('debounceMs', debounceMs, 0)
  validateMs('pollIntervalMs', pollIntervalMs, 1)

  let closed = false
  let lastText: string | undefined
  let lastFingerprint = options.initial === undefined ? undefined : spokesConfigFingerprint(options.initial)
  let lastStat: string | undefined
  let lastReadError: string | undefined
  let running = false
  let again = false
  let debounce: NodeJS.Timeout | undefined
  let watcher: FSWatcher | undefined

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

  const check = async (): Promise<void> => {
    if (running) {
      again = true
      return
    }
    running = true
    try {
      do {
        again = false
        await checkOnce()
      } while (again && !closed)
    } finally {
      running = false
    }
  }

  const checkOnce = async (): Promise<void> => {
    let text: string
    try {
      text = await readSpokesText(path)
    } catch (err) {
      if (closed) return
      const message = err instanceof Error ? err.message : String(err)
      if (message !== lastReadError) report(err)
      lastReadError = message
      lastText = undefined // re-evaluate whatever comes back, even identical text
      return
    }
    lastReadError = undefined
    if (closed || text === lastText) return
    lastText = text
    let config: SpokesConfig
    try {
      config = parseSpokesConfig(text, path)
    } catch (err) {
      report(err)
      return
    }
    const fingerprint = spokesConfigFingerprint(config)
    if (fingerprint === lastFingerprint) return
    lastFingerprint = fingerprint
    try {
      options.onChange(config)
    } catch (err) {
      report(err)
    }
  }

  const schedule = (): void => {
    if (closed) return
    if (debounce !== undefined) clearTimeout(debounce)
    debounce = setTimeout(() => {
      debounce = undefined
      void check()
    }, debounceMs)
    debounce.unref()
  }

  const poll = async (): Promise<void> => {
    let signature: string
    try {
      const s = await stat(path)
      signature = `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`
    } catch (err) {
      signature = `error:${err instanceof Error && 'code' in err ? String(err.code) : 'unknown'}`
    }
    if (closed || signature === lastStat) return
    lastStat = signature
    schedule()
  }

  try {
    watcher = watch(dirname(path), { persistent: false }, () => { schedule() })
    watcher.on('error', () => {
      // The directory went away or inotify gave up; the stat poll keeps the watch going.
      watcher?.close()
      watcher = undefined
    })
  } catch {
    // fs.watch is unavailable here (missing directory, inotify limit); the stat poll alone is enough.
    watcher = undefined
  }
  const interval = setInterval(() => { void poll() }, pollIntervalMs)
  interval.unref()
  void poll() // first read, and a baseline for the poll

  return {
    close () {
      if (closed) return
      closed = true
      clearInterval(interval)
      if (debounce !== undefined) clearTimeout(debounce)
      watcher?.close()
      watcher = undefined
    },
  }
}

async function readSpokesText (path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : 'unknown error'
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_READ', `${path}: cannot read the spokes file (${code})`, { cause: err })
  }
}

function validateMs (name: string, value: number, min: number): void {
  if (!Number.isFinite(value) || value < min || value > 2_147_483_647) {
    throw new ConfigError('SLK_ERR_CONFIG_INVALID_OPTION', `${name}: expected a number of milliseconds >= ${min}, got ${String(value)}`)
  }
}
