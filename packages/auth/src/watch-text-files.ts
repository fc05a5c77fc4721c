import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ConfigError } from './errors.js'
import { validateMs, watchFileChanges } from './file-change-trigger.js'

/** Options of {@link watchTextFiles}. */
export interface WatchTextFilesOptions {
  /**
   * Called with the texts of every watched file (in the order of `paths`) when any of them changed. What it throws
   * goes to `onError`; the new texts are still taken as the current ones (the next change calls again).
   */
  onChange: (texts: string[]) => void
  /** Called when a file cannot be read (once per distinct failure, not per retry) or when `onChange` throws. */
  onError: (err: ConfigError) => void
  /** The texts the caller already loaded: without them, the first read is only a baseline and is not reported. */
  initial?: readonly string[]
  /** Quiet time after an event before the files are read (a burst of events gives one read). @default 100 */
  debounceMs?: number
  /** Interval of the stat poll backing up `fs.watch`; a file that could not be read is retried at this pace. @default 1000 */
  pollIntervalMs?: number
  /** Interval of a full re-read whatever events and polls say (the texts' sha256 decides). @default 30000 */
  rereadIntervalMs?: number
}

/** Defaults of {@link WatchTextFilesOptions}. */
export const WATCH_TEXT_FILES_DEFAULTS = {
  debounceMs: 100,
  pollIntervalMs: 1000,
  rereadIntervalMs: 30_000,
} as const satisfies Required<Pick<WatchTextFilesOptions, 'debounceMs' | 'pollIntervalMs' | 'rereadIntervalMs'>>

/** A running {@link watchTextFiles}. */
export interface TextFilesWatcher {
  /** Reads the files now (after any read already running); resolves once `onChange`/`onError` ran if they had to. */
  reread: () => Promise<void>
  /** Stops watching; idempotent. No callback runs after it returns. */
  close: () => void
}

/**
 * Watches a few small text files (a token file, a join file, a TLS certificate and its key) and reports when their
 * content changes. Like the spokes-file watch it watches each file's *directory*, because a Kubernetes Secret
 * update swaps the volume's `..data` symlink (and editors save by rename): the file's own inode never changes, a
 * watch on it would see nothing. A `stat` poll (following symlinks) and a periodic full re-read back the events up.
 * The files are read together and compared by the sha256 of their texts, so a certificate and its key renewed a few
 * milliseconds apart give one `onChange` once both are written (when they land within `debounceMs`), or two calls
 * the second of which is consistent. Timers are `unref()`ed; the watch never keeps the process alive.
 * @throws {ConfigError} `SLK_ERR_CONFIG_INVALID_OPTION` when a delay option is out of range or `paths` is empty
 */
export function watchTextFiles (paths: readonly string[], options: WatchTextFilesOptions): TextFilesWatcher {
  const debounceMs = options.debounceMs ?? WATCH_TEXT_FILES_DEFAULTS.debounceMs
  const pollIntervalMs = options.pollIntervalMs ?? WATCH_TEXT_FILES_DEFAULTS.pollIntervalMs
  const rereadIntervalMs = options.rereadIntervalMs ?? WATCH_TEXT_FILES_DEFAULTS.rereadIntervalMs
  validateMs('debounceMs', debounceMs, 0)
  validateMs('pollIntervalMs', pollIntervalMs, 1)
  validateMs('rereadIntervalMs', rereadIntervalMs, 1)
  if (paths.length === 0) throw new ConfigError('SLK_ERR_CONFIG_INVALID_OPTION', 'watchTextFiles: expected at least one path')

  let closed = false
  let lastSha256 = options.initial === undefined ? undefined : digest(options.initial)
  let lastError: string | undefined
  let chain: Promise<void> = Promise.resolve()

  const report = (err: unknown): void => {
    if (closed) return
    try {
      options.onError(err instanceof ConfigError
        ? err
        : new ConfigError('SLK_ERR_CONFIG_FILE_WATCH', `${paths.join(', ')}: change handler failed`, { cause: err }))
    } catch {
      // onError is the last resort: a throwing handler must neither stop the watch nor become an unhandled rejection.
    }
  }

  const readOnce = async (): Promise<void> => {
    let texts: string[]
    try {
      texts = await Promise.all(paths.map(async (path) => readText(path)))
    } catch (err) {
      if (closed) return
      const message = err instanceof Error ? err.message : String(err)
      if (message !== lastError) report(err)
      lastError = message
      trigger.forgetStat() // the next poll reads again
      return
    }
    lastError = undefined
    if (closed) return
    const sha256 = digest(texts)
    if (lastSha256 === undefined) {
      lastSha256 = sha256
      return
    }
    if (sha256 === lastSha256) return
    lastSha256 = sha256
    try {
      options.onChange(texts)
    } catch (err) {
      report(err)
    }
  }

  const check = async (): Promise<void> => {
    const next = chain.then(async () => { if (!closed) await readOnce() })
    chain = next.catch(() => { /* readOnce reports its own errors */ })
    return next
  }

  const trigger = watchFileChanges(paths, { debounceMs, pollIntervalMs, rereadIntervalMs, onCheck: () => { void check() } })

  return {
    reread: check,
    close () {
      if (closed) return
      closed = true
      trigger.close()
    },
  }
}

function digest (texts: readonly string[]): string {
  const hash = createHash('sha256')
  for (const text of texts) hash.update(createHash('sha256').update(text).digest())
  return hash.digest('hex')
}

async function readText (path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : 'unknown error'
    throw new ConfigError('SLK_ERR_CONFIG_FILE_WATCH', `${path}: cannot read the watched file (${code})`, { cause: err })
  }
}
