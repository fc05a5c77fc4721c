import { readFile } from 'node:fs/promises'
import { ConfigError, SpokesFileError } from './errors.js'
import { acquireSpokesFileLock } from './spokes-file-lock.js'
import type { SpokesFileLockOptions } from './spokes-file-lock.js'
import { parseSpokesConfig } from './spokes-config.js'
import { writeFileAtomic } from './write-file-atomic.js'

/** Outcome of {@link editSpokesFile}. */
export interface SpokesFileEdit {
  /** The file's text the edit was applied to (read under the lock). */
  before: string
  /** The text now in the file. */
  after: string
  /** Whether the file was rewritten (false when the edit returned the text unchanged). */
  changed: boolean
}

/**
 * Applies `edit` to the spokes file at `path` as one compare-and-swap: take the file's lock
 * ({@link acquireSpokesFileLock}), read the file *under the lock*, apply `edit`, check the result is a valid spokes
 * file, write it atomically (temp file, fsync, rename, fsync the directory), release the lock. Two edits at once
 * (two `spokelink token create`, a create and a revoke) therefore both land: the second one sees the first's
 * result instead of overwriting it with a copy read before it.
 * @param edit - pure function from the current text to the new text; what it throws is rethrown (nothing written)
 * @throws {SpokesFileError} `SLK_ERR_SPOKES_LOCK_TIMEOUT`, `SLK_ERR_SPOKES_LOCK_LOST`, `SLK_ERR_SPOKES_WRITE`
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_READ`, `SLK_ERR_CONFIG_SPOKES_FILE` (the edit's result is invalid),
 * `SLK_ERR_CONFIG_INVALID_OPTION`
 */
export async function editSpokesFile (path: string, edit: (text: string) => string, options: SpokesFileLockOptions = {}): Promise<SpokesFileEdit> {
  const lock = await acquireSpokesFileLock(path, options)
  try {
    let before: string
    try {
      before = await readFile(path, 'utf8')
    } catch (err) {
      throw new ConfigError('SLK_ERR_CONFIG_SPOKES_READ', `${path}: cannot read the spokes file (${errnoCode(err)})`, { cause: err })
    }
    const after = edit(before)
    if (after === before) return { before, after, changed: false }
    parseSpokesConfig(after, path)
    await lock.assertHeld()
    try {
      await writeFileAtomic(path, after)
    } catch (err) {
      throw new SpokesFileError('SLK_ERR_SPOKES_WRITE', `${path}: cannot write the spokes file (${errnoCode(err)}); it is unchanged`, { cause: err })
    }
    return { before, after, changed: true }
  } finally {
    await lock.release()
  }
}

function errnoCode (err: unknown): string {
  return err instanceof Error && 'code' in err ? String(err.code) : 'unknown error'
}
