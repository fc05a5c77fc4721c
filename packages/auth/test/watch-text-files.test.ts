import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { watchTextFiles } from '../src/index.js'
import type { ConfigError, TextFilesWatcher } from '../src/index.js'

/**
 * Lays a directory out the way kubelet mounts a Secret: the data in `..<version>/`, `..data` → that directory, and
 * each key a symlink `key` → `..data/key`. An update writes a new version directory and renames a fresh `..data_tmp`
 * symlink over `..data`, so the key's path never changes inode itself.
 */
async function kubeletSecretDir (dir: string, files: Record<string, string>): Promise<(files: Record<string, string>) => Promise<void>> {
  let version = 0
  const publish = async (next: Record<string, string>): Promise<void> => {
    const versionDir = `..2026_12_01_${String(++version)}`
    await mkdir(join(dir, versionDir))
    for (const [key, text] of Object.entries(next)) await writeFile(join(dir, versionDir, key), text)
    await symlink(versionDir, join(dir, '..data_tmp'))
    await rename(join(dir, '..data_tmp'), join(dir, '..data'))
  }
  await publish(files)
  for (const key of Object.keys(files)) await symlink(join('..data', key), join(dir, key))
  return publish
}

describe('watchTextFiles', () => {
  let dir: string | undefined
  let watcher: TextFilesWatcher | undefined
  afterEach(async () => {
    watcher?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('a Secret update (..data symlink swap) is reported once with both new texts; unchanged content is not reported', async () => {
    dir = await mkdtemp(join(tmpdir(), 'slk-watch-'))
    const publish = await kubeletSecretDir(dir, { 'tls.crt': 'cert-1', 'tls.key': 'key-1' })
    const changes: string[][] = []
    const errors: ConfigError[] = []
    // A long poll: the change must come from the directory event (the poll would find it too, only later).
    watcher = watchTextFiles([join(dir, 'tls.crt'), join(dir, 'tls.key')], {
      initial: ['cert-1', 'key-1'],
      pollIntervalMs: 60_000,
      debounceMs: 20,
      onChange: (texts) => { changes.push(texts) },
      onError: (err) => { errors.push(err) },
    })
    await publish({ 'tls.crt': 'cert-2', 'tls.key': 'key-2' })
    await expect.poll(() => changes.length, { timeout: 10_000 }).toBe(1)
    expect(changes).toEqual([['cert-2', 'key-2']])
    // Same content republished: read, compared, not reported.
    await publish({ 'tls.crt': 'cert-2', 'tls.key': 'key-2' })
    await watcher.reread()
    expect(changes).toHaveLength(1)
    expect(errors).toEqual([])
  })

  test('a missing file is one error, and the file coming back is reported; a throwing onChange goes to onError', async () => {
    dir = await mkdtemp(join(tmpdir(), 'slk-watch-'))
    const path = join(dir, 'token')
    await writeFile(path, 'one')
    const changes: string[] = []
    const errors: string[] = []
    watcher = watchTextFiles([path], {
      initial: ['one'],
      pollIntervalMs: 20,
      debounceMs: 0,
      onChange: ([text]) => {
        changes.push(text ?? '')
        if (text === 'bad') throw new Error('cannot use it')
      },
      onError: (err) => { errors.push(err.code) },
    })
    await rm(path)
    await watcher.reread()
    await watcher.reread()
    expect(errors).toEqual(['SLK_ERR_CONFIG_FILE_WATCH'])
    await writeFile(path, 'bad')
    await expect.poll(() => changes.length, { timeout: 10_000 }).toBe(1)
    expect(errors).toEqual(['SLK_ERR_CONFIG_FILE_WATCH', 'SLK_ERR_CONFIG_FILE_WATCH'])
    await writeFile(path, 'two')
    await expect.poll(() => changes.length, { timeout: 10_000 }).toBe(2)
    expect(changes).toEqual(['bad', 'two'])
  })
})
