import { mkdir, mkdtemp, readFile as readFileText, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, onTestFinished, test, vi } from 'vitest'
import { loadSpokesFile, loadSpokesFileWithDigest, watchSpokesFile } from '../src/index.js'
import type { ConfigError, SpokesConfig } from '../src/index.js'

const SHA = 'a'.repeat(64)
const spokesText = (...names: string[]): string =>
  `# managed by hand\nspokes:\n${names.map((n, i) => `  - {name: ${n}, tokens: [{id: tok${i}abcd, sha256: "${SHA}"}], ports: [{upstream: prometheus, listen: "127.0.0.1:${19090 + i}"}]}\n`).join('')}`

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'slk-auth-spokes-'))
  onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** Replaces the file the way editors and config tools do: write a sibling, rename it over. */
async function replaceByRename (path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${Math.random().toString(36).slice(2)}`
  await writeFile(tmp, text)
  await rename(tmp, path)
}

function recorder (): { changes: SpokesConfig[], errors: ConfigError[], onChange: (c: SpokesConfig) => void, onError: (e: ConfigError) => void } {
  const changes: SpokesConfig[] = []
  const errors: ConfigError[] = []
  return { changes, errors, onChange: (c) => { changes.push(c) }, onError: (e) => { errors.push(e) } }
}

const names = (c: SpokesConfig | undefined): string[] | undefined => c?.spokes.map((s) => s.name)
const WAIT = { timeout: 10_000, interval: 20 }

describe('loadSpokesFile', () => {
  test('loads a valid file and names the path in errors', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a', 'b'))
    expect(names(await loadSpokesFile(path))).toEqual(['a', 'b'])
    await writeFile(path, 'spokes: [{name: A}]\n')
    await expect(loadSpokesFile(path)).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_SPOKES_FILE', message: expect.stringContaining(`${path}: spokes[0].name:`) })
    await expect(loadSpokesFile(join(dir, 'missing.yaml'))).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_SPOKES_READ', message: expect.stringContaining('ENOENT') })
  })
})

describe('watchSpokesFile', () => {
  test('picks up a rename-over rewrite, and a broken write keeps the last good config', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a'))
    const initial = await loadSpokesFile(path)
    const r = recorder()
    const watcher = watchSpokesFile(path, { ...r, initial, debounceMs: 10, pollIntervalMs: 50 })
    onTestFinished(() => { watcher.close() })

    await replaceByRename(path, spokesText('a', 'b'))
    await vi.waitFor(() => { expect(names(r.changes.at(-1))).toEqual(['a', 'b']) }, WAIT)
    expect(r.changes).toHaveLength(1)

    await replaceByRename(path, 'spokes:\n  - {name: a, ports: [{upstream: prometheus, listen: "19090"}]}\n')
    await vi.waitFor(() => { expect(r.errors).toHaveLength(1) }, WAIT)
    expect(r.errors[0]).toMatchObject({ code: 'SLK_ERR_CONFIG_SPOKES_FILE', message: `${path}: spokes[0].ports[0].listen: expected "host:port" with an IP or hostname (IPv6 in brackets) and a port 1-65535, got "19090"` })
    expect(r.changes).toHaveLength(1)

    // Only a comment changes: same parsed content, so no onChange; then a real change comes through.
    await replaceByRename(path, `# a comment\n${spokesText('a', 'b')}`)
    await replaceByRename(path, spokesText('a', 'b', 'c'))
    await vi.waitFor(() => { expect(names(r.changes.at(-1))).toEqual(['a', 'b', 'c']) }, WAIT)
    expect(r.changes.map(names)).toEqual([['a', 'b'], ['a', 'b', 'c']])
    expect(r.errors).toHaveLength(1)
  })

  test('follows a Kubernetes Secret volume update (..data symlink swap)', async () => {
    const dir = await tempDir()
    await mkdir(join(dir, '..2026_01_01_v1'))
    await writeFile(join(dir, '..2026_01_01_v1', 'spokes.yaml'), spokesText('a'))
    await symlink('..2026_01_01_v1', join(dir, '..data'))
    await symlink(join('..data', 'spokes.yaml'), join(dir, 'spokes.yaml'))
    const path = join(dir, 'spokes.yaml')
    const r = recorder()
    const watcher = watchSpokesFile(path, { ...r, debounceMs: 10, pollIntervalMs: 50 })
    onTestFinished(() => { watcher.close() })
    // Without `initial`, the first valid read is reported.
    await vi.waitFor(() => { expect(names(r.changes.at(-1))).toEqual(['a']) }, WAIT)

    await mkdir(join(dir, '..2026_01_01_v2'))
    await writeFile(join(dir, '..2026_01_01_v2', 'spokes.yaml'), spokesText('a', 'k8s'))
    await symlink('..2026_01_01_v2', join(dir, '..data_tmp'))
    await rename(join(dir, '..data_tmp'), join(dir, '..data'))
    await rm(join(dir, '..2026_01_01_v1'), { recursive: true })
    await vi.waitFor(() => { expect(names(r.changes.at(-1))).toEqual(['a', 'k8s']) }, WAIT)
    expect(r.changes).toHaveLength(2)
    expect(r.errors).toEqual([])
  })

  test('reports a missing file once and recovers when it comes back; close() stops callbacks', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    const r = recorder()
    const watcher = watchSpokesFile(path, { ...r, debounceMs: 10, pollIntervalMs: 30 })
    onTestFinished(() => { watcher.close() })
    await vi.waitFor(() => { expect(r.errors.map((e) => e.code)).toEqual(['SLK_ERR_CONFIG_SPOKES_READ']) }, WAIT)
    await replaceByRename(path, spokesText('late'))
    await vi.waitFor(() => { expect(names(r.changes.at(-1))).toEqual(['late']) }, WAIT)
    expect(r.errors).toHaveLength(1)

    watcher.close()
    watcher.close()
    const seen = r.changes.length
    await replaceByRename(path, spokesText('after-close'))
    // Prove the poll would have fired by running a second watcher to the same point.
    const r2 = recorder()
    const second = watchSpokesFile(path, { ...r2, debounceMs: 10, pollIntervalMs: 30 })
    onTestFinished(() => { second.close() })
    await vi.waitFor(() => { expect(names(r2.changes.at(-1))).toEqual(['after-close']) }, WAIT)
    expect(r.changes).toHaveLength(seen)
  })

  test('the directory watch alone sees an editor-style rename (poll effectively off)', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a'))
    const r = recorder()
    const watcher = watchSpokesFile(path, { ...r, initial: await loadSpokesFile(path), debounceMs: 10, pollIntervalMs: 600_000 })
    onTestFinished(() => { watcher.close() })
    await replaceByRename(path, spokesText('a', 'renamed'))
    await vi.waitFor(() => { expect(names(r.changes.at(-1))).toEqual(['a', 'renamed']) }, WAIT)
  })

  test('rejects bad options', () => {
    const noop = (): void => {}
    expect(() => watchSpokesFile('x', { onChange: noop, onError: noop, pollIntervalMs: 0 })).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_INVALID_OPTION' }))
    expect(() => watchSpokesFile('x', { onChange: noop, onError: noop, rereadIntervalMs: 0 })).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_INVALID_OPTION', message: expect.stringContaining('rereadIntervalMs') }))
    expect(() => watchSpokesFile('x', { onChange: noop, onError: noop, retryInitialMs: 500, retryMaxMs: 499 })).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_INVALID_OPTION', message: expect.stringContaining('retryMaxMs') }))
  })

  // Issue 7 item 2: with the exit-node out of file descriptors, the one read after a revocation failed with EMFILE
  // and was never tried again, so the revoked token kept serving until an unrelated edit.
  test('a read that fails (EMFILE) is retried with backoff until it succeeds, and the change it missed is applied', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a', 'b'))
    let failing = false
    let failedReads = 0
    const readFile = async (file: string): Promise<string> => {
      if (failing) {
        failedReads++
        throw Object.assign(new Error(`EMFILE: too many open files, open '${file}'`), { code: 'EMFILE' })
      }
      return readFileText(file, 'utf8')
    }
    const r = recorder()
    // The re-read interval stays at its 30 s default, so only the retry can bring the change in.
    const watcher = watchSpokesFile(path, { ...r, initial: await loadSpokesFile(path), readFile, debounceMs: 10, pollIntervalMs: 50, retryInitialMs: 10, retryMaxMs: 40 })
    onTestFinished(() => { watcher.close() })

    failing = true
    await replaceByRename(path, spokesText('a'))
    // Several failed attempts, reported once (one broken state, one error).
    await vi.waitFor(() => { expect(failedReads).toBeGreaterThanOrEqual(4) }, WAIT)
    expect(r.errors.map((e) => [e.code, e.message])).toEqual([['SLK_ERR_CONFIG_SPOKES_READ', `${path}: cannot read the spokes file (EMFILE)`]])
    expect(r.changes).toEqual([])

    failing = false
    await vi.waitFor(() => { expect(r.changes.map(names)).toEqual([['a']]) }, { timeout: 5000, interval: 10 })
    expect(r.errors).toHaveLength(1)
  })

  test('retry delays double from retryInitialMs and stop at retryMaxMs (fake clock); the first good read applies', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
    onTestFinished(() => { vi.useRealTimers() })
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a'))
    const initial = await loadSpokesFile(path)
    let failing = true
    const attempts: number[] = []
    const readFile = async (): Promise<string> => {
      attempts.push(Date.now())
      if (failing) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })
      return spokesText('a', 'late')
    }
    const r = recorder()
    // Only reread() and the retry timer read: the event, poll and re-read paths are pushed out of the window.
    const watcher = watchSpokesFile(path, { ...r, initial, readFile, debounceMs: 600_000, pollIntervalMs: 600_000, rereadIntervalMs: 600_000 })
    onTestFinished(() => { watcher.close() })
    expect(await watcher.reread()).toBe('failed')
    await vi.advanceTimersByTimeAsync(100 + 200 + 400 + 800 + 1600 + 2000 + 2000)
    const gaps = attempts.slice(1).map((at, i) => at - (attempts[i] ?? at))
    expect(gaps).toEqual([100, 200, 400, 800, 1600, 2000, 2000])
    failing = false
    await vi.advanceTimersByTimeAsync(2000)
    expect(r.changes.map(names)).toEqual([['a', 'late']])
    expect(r.errors).toHaveLength(1)
    // Recovered: no more retries.
    const settled = attempts.length
    await vi.advanceTimersByTimeAsync(10_000)
    expect(attempts).toHaveLength(settled)
  })

  test('the periodic re-read catches a change no event and no stat poll saw (content hash)', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a'))
    // The injected reader serves text the file system never shows: no fs event, no stat change.
    let served = spokesText('a')
    let reads = 0
    const readFile = async (): Promise<string> => {
      reads++
      return served
    }
    const r = recorder()
    const watcher = watchSpokesFile(path, { ...r, initial: await loadSpokesFile(path), readFile, debounceMs: 10, pollIntervalMs: 600_000, rereadIntervalMs: 30 })
    onTestFinished(() => { watcher.close() })
    await vi.waitFor(() => { expect(reads).toBeGreaterThanOrEqual(1) }, WAIT) // the watch's first read is done
    served = spokesText('a', 'unseen')
    await vi.waitFor(() => { expect(r.changes.map(names)).toEqual([['a', 'unseen']]) }, WAIT)
  })

  test('initialTextSha256: the text the caller loaded is not parsed again (no onChange without initial); another text is', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a'))
    const loaded = await loadSpokesFileWithDigest(path)
    expect(names(loaded.config)).toEqual(['a'])
    expect(loaded.textSha256).toMatch(/^[0-9a-f]{64}$/)
    const quiet = { pollIntervalMs: 600_000, rereadIntervalMs: 600_000 }
    // Without `initial`, a read that parses reports the config through onChange: that is how a parse shows here.
    const parsed = recorder()
    const plain = watchSpokesFile(path, { ...parsed, ...quiet })
    onTestFinished(() => { plain.close() })
    await plain.reread()
    expect(parsed.changes.map(names)).toEqual([['a']])
    const skipped = recorder()
    const watcher = watchSpokesFile(path, { ...skipped, ...quiet, initialTextSha256: loaded.textSha256 })
    onTestFinished(() => { watcher.close() })
    expect(await watcher.reread()).toBe('unchanged')
    expect(skipped.changes).toEqual([])
    await writeFile(path, spokesText('a', 'b'))
    expect(await watcher.reread()).toBe('changed')
    expect(skipped.changes.map(names)).toEqual([['a', 'b']])
    expect(skipped.errors).toEqual([])
  })

  test('reread() reads at once and says what came of it', async () => {
    const dir = await tempDir()
    const path = join(dir, 'spokes.yaml')
    await writeFile(path, spokesText('a'))
    let served: string | Error = spokesText('a')
    const readFile = async (): Promise<string> => {
      if (served instanceof Error) throw served
      return served
    }
    const r = recorder()
    const watcher = watchSpokesFile(path, { ...r, initial: await loadSpokesFile(path), readFile, pollIntervalMs: 600_000, retryInitialMs: 600_000, retryMaxMs: 600_000 })
    onTestFinished(() => { watcher.close() })
    expect(await watcher.reread()).toBe('unchanged')
    served = spokesText('a', 'b')
    expect(await watcher.reread()).toBe('changed')
    expect(r.changes.map(names)).toEqual([['a', 'b']])
    expect(await watcher.reread()).toBe('unchanged')
    served = 'spokes: [{name: A}]\n'
    expect(await watcher.reread()).toBe('failed')
    expect(await watcher.reread()).toBe('failed')
    served = Object.assign(new Error('EACCES'), { code: 'EACCES' })
    expect(await watcher.reread()).toBe('failed')
    expect(r.errors.map((e) => e.code)).toEqual(['SLK_ERR_CONFIG_SPOKES_FILE', 'SLK_ERR_CONFIG_SPOKES_READ'])
    served = spokesText('a', 'b')
    // Back to the content in force: nothing to apply.
    expect(await watcher.reread()).toBe('unchanged')
    expect(r.changes).toHaveLength(1)
  })
})
