import { randomBytes } from 'node:crypto'
import { open, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** Mode of the new file. @default the existing file's mode, or 0o600 when there is none */
  mode?: number
}

/**
 * Replaces `path` with `text` so that a reader sees the old file or the new one, never half of either, and the new
 * one survives a crash: the text goes to a sibling temp file (same directory, so the rename stays on one file
 * system), which is fsynced, renamed over `path`, and then the directory is fsynced so the rename itself is durable.
 * The temp file is removed when any step fails, so a failed write leaves no litter beside the file.
 * @throws the underlying `NodeJS.ErrnoException` (callers wrap it in their own typed error)
 */
export async function writeFileAtomic (path: string, text: string, options: WriteFileAtomicOptions = {}): Promise<void> {
  const mode = options.mode ?? await stat(path).then((info) => info.mode & 0o777, () => 0o600)
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const file = await open(temporary, 'wx', mode)
    try {
      await file.writeFile(text, 'utf8')
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(temporary, path)
  } catch (err) {
    await rm(temporary, { force: true })
    throw err
  }
  await syncDirectory(dirname(path))
}

/** fsyncs a directory so a rename or create inside it survives a crash. */
export async function syncDirectory (dir: string): Promise<void> {
  let handle
  try {
    handle = await open(dir, 'r')
    await handle.sync()
  } catch (err) {
    // Some file systems (and Windows) cannot fsync a directory; the rename is done, only its durability is weaker.
    if (!isErrno(err, 'EISDIR') && !isErrno(err, 'EINVAL') && !isErrno(err, 'EPERM') && !isErrno(err, 'EBADF')) throw err
  } finally {
    await handle?.close()
  }
}

function isErrno (err: unknown, code: string): boolean {
  return err instanceof Error && 'code' in err && err.code === code
}
