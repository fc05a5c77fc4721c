import { watch } from 'node:fs'
import type { FSWatcher } from 'node:fs'
import { stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ConfigError } from './errors.js'

/** Options of {@link watchFileChanges}; the callers validate the delays. */
export interface FileChangeTriggerOptions {
  /** Quiet time after an event (or a changed stat) before `onCheck`, so a burst gives one call. */
  debounceMs: number
  /** Interval of the stat poll that backs up `fs.watch`. */
  pollIntervalMs: number
  /** Interval of an `onCheck` whatever events and polls say. */
  rereadIntervalMs: number
  /** Read the files now and compare: what changed is the caller's to decide (by the content's sha256). */
  onCheck: () => void
}

/** A running {@link watchFileChanges}. */
export interface FileChangeTrigger {
  /** Forgets the last stat, so the next poll calls `onCheck` even if nothing changed (after a failed read). */
  forgetStat: () => void
  /** Stops every watcher and timer; idempotent. No `onCheck` after it returns. */
  close: () => void
}

/**
 * When to re-read a few files: after a burst of `fs.watch` events on their *directories* (a Kubernetes Secret
 * update swaps the volume's `..data` symlink and editors save by rename: the file's own inode never changes, a
 * watch on it would see nothing), when a `stat` poll (following symlinks) sees one of them change, and every
 * `rereadIntervalMs` regardless. The first poll runs at once, so the first `onCheck` comes `debounceMs` later. Timers are
 * `unref()`ed and the watchers not persistent, so this never keeps the process alive.
 */
export function watchFileChanges (paths: readonly string[], options: FileChangeTriggerOptions): FileChangeTrigger {
  let closed = false
  let lastStat: string | undefined
  let debounce: NodeJS.Timeout | undefined
  const watchers: FSWatcher[] = []

  const schedule = (): void => {
    if (closed) return
    if (debounce !== undefined) clearTimeout(debounce)
    debounce = setTimeout(() => {
      debounce = undefined
      if (!closed) options.onCheck()
    }, options.debounceMs)
    debounce.unref()
  }

  const poll = async (): Promise<void> => {
    const signatures = await Promise.all(paths.map(async (path) => {
      try {
        const s = await stat(path)
        return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`
      } catch (err) {
        return `error:${err instanceof Error && 'code' in err ? String(err.code) : 'unknown'}`
      }
    }))
    const signature = signatures.join('|')
    if (closed || signature === lastStat) return
    lastStat = signature
    schedule()
  }

  for (const dir of new Set(paths.map((path) => dirname(path)))) {
    try {
      const watcher = watch(dir, { persistent: false }, () => { schedule() })
      watcher.on('error', () => {
        // The directory went away or inotify gave up; the stat poll keeps the watch going.
        watcher.close()
      })
      watchers.push(watcher)
    } catch {
      // fs.watch is unavailable here (missing directory, inotify limit); the stat poll alone is enough.
    }
  }
  const interval = setInterval(() => { void poll() }, options.pollIntervalMs)
  interval.unref()
  const rereadInterval = setInterval(() => { if (!closed) options.onCheck() }, options.rereadIntervalMs)
  rereadInterval.unref()
  void poll()

  return {
    forgetStat: () => { lastStat = undefined },
    close () {
      if (closed) return
      closed = true
      clearInterval(interval)
      clearInterval(rereadInterval)
      if (debounce !== undefined) clearTimeout(debounce)
      for (const watcher of watchers) watcher.close()
    },
  }
}

/**
 * Checks a delay option of the file watches: a finite number of milliseconds from `min` up to what `setTimeout` takes.
 * @throws {ConfigError} `SLK_ERR_CONFIG_INVALID_OPTION` naming the option
 */
export function validateMs (name: string, value: number, min: number): void {
  if (!Number.isFinite(value) || value < min || value > 2_147_483_647) {
    throw new ConfigError('SLK_ERR_CONFIG_INVALID_OPTION', `${name}: expected a number of milliseconds >= ${min}, got ${String(value)}`)
  }
}
