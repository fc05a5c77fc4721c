import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, onTestFinished, test } from 'vitest'
import {
  SPOKES_FILE_LOCK_DEFAULTS,
  acquireSpokesFileLock,
  addSpokeToken,
  createSpokeToken,
  editSpokesFile,
  parseSpokesConfig,
  revokeSpokeToken,
  writeFileAtomic,
} from '../src/index.js'

const SPOKES = [
  '# hand-kept comment',
  'spokes:',
  '  - name: orion-aws',
  '    tokens: []',
  '    ports: [{upstream: prometheus, listen: "127.0.0.1:19090"}]',
  '',
].join('\n')

async function tempSpokes (text = SPOKES): Promise<{ dir: string, path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'slk-auth-edit-'))
  onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
  const path = join(dir, 'spokes.yaml')
  await writeFile(path, text, { mode: 0o640 })
  return { dir, path }
}

/** A pid that certainly belonged to a process of this host that has exited. */
async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  const pid = child.pid
  await once(child, 'exit')
  if (pid === undefined) throw new Error('no pid')
  return pid
}

async function writeLock (path: string, owner: { pid: number, host?: string }, ageMs = 0): Promise<void> {
  const lockPath = `${path}.lock`
  await writeFile(lockPath, `${JSON.stringify({ pid: owner.pid, host: owner.host ?? hostname(), nonce: 'n' })}\n`)
  if (ageMs > 0) {
    const then = new Date(Date.now() - ageMs)
    await utimes(lockPath, then, then)
  }
}

const tokenIds = (text: string): string[] => parseSpokesConfig(text, 'x').spokes.flatMap((s) => s.tokens.map((t) => t.id))
const addOne = (id: string) => (text: string): string => addSpokeToken(text, 'orion-aws', { id, sha256: createSpokeToken().sha256 })

describe('editSpokesFile', () => {
  test('re-reads under the lock, writes atomically, keeps the mode and leaves nothing beside the file', async () => {
    const { dir, path } = await tempSpokes()
    const result = await editSpokesFile(path, addOne('first1ab'))
    expect(result.changed).toBe(true)
    expect(result.before).toBe(SPOKES)
    expect(await readFile(path, 'utf8')).toBe(result.after)
    expect(tokenIds(result.after)).toEqual(['first1ab'])
    expect(result.after.startsWith('# hand-kept comment\n')).toBe(true)
    expect((await stat(path)).mode & 0o777).toBe(0o640)
    expect(await readdir(dir)).toEqual(['spokes.yaml'])
  })

  test('20 edits at once, creates and revokes interleaved, lose nothing', async () => {
    const { dir, path } = await tempSpokes()
    const ids = Array.from({ length: 14 }, (_, i) => `conc${String(i).padStart(2, '0')}ab`)
    const revoked = ids.slice(0, 6)
    // The revokes' tokens exist first; then 14 creates and 6 revokes race.
    for (const id of revoked) await editSpokesFile(path, addOne(id))
    const created = ids.slice(6)
    await Promise.all([
      ...created.map(async (id) => editSpokesFile(path, addOne(id))),
      ...revoked.map(async (id) => editSpokesFile(path, (text) => revokeSpokeToken(text, id))),
    ])
    const tokens = parseSpokesConfig(await readFile(path, 'utf8'), 'x').spokes[0]?.tokens ?? []
    expect(tokens.map((t) => t.id).sort()).toEqual([...ids].sort())
    expect(tokens.filter((t) => t.revoked === true).map((t) => t.id).sort()).toEqual([...revoked].sort())
    expect(await readdir(dir)).toEqual(['spokes.yaml'])
  })

  test('a lock held by a live process: waits lockTimeoutMs, then fails with one line and changes nothing', async () => {
    const { path } = await tempSpokes()
    await writeLock(path, { pid: process.pid })
    const err = await editSpokesFile(path, addOne('never1ab'), { lockTimeoutMs: 50 }).catch((e: unknown) => e)
    expect(err).toMatchObject({
      name: 'SpokesFileError',
      code: 'SLK_ERR_SPOKES_LOCK_TIMEOUT',
      message: `${path}: another edit (process ${process.pid} on ${hostname()}) held ${path}.lock for more than 50 ms; try again, or remove the lock file if no edit is running`,
    })
    expect(await readFile(path, 'utf8')).toBe(SPOKES)
    // The live owner's lock is left alone.
    expect(await readFile(`${path}.lock`, 'utf8')).toContain(`"pid":${process.pid}`)
  })

  test('a lock whose owner process is gone is broken at once, whatever its age', async () => {
    const { dir, path } = await tempSpokes()
    await writeLock(path, { pid: await deadPid() })
    await editSpokesFile(path, addOne('after1ab'), { lockTimeoutMs: 0 })
    expect(tokenIds(await readFile(path, 'utf8'))).toEqual(['after1ab'])
    expect(await readdir(dir)).toEqual(['spokes.yaml'])
  })

  test('a live owner\'s lock is stale only past staleLockMs (edge), and another host\'s pid is judged by age alone', async () => {
    const { path } = await tempSpokes()
    await writeLock(path, { pid: process.pid }, 5000)
    await expect(editSpokesFile(path, addOne('young1ab'), { lockTimeoutMs: 30, staleLockMs: 60_000 })).rejects.toMatchObject({ code: 'SLK_ERR_SPOKES_LOCK_TIMEOUT' })
    await editSpokesFile(path, addOne('old1abcd'), { lockTimeoutMs: 30, staleLockMs: 4000 })
    expect(tokenIds(await readFile(path, 'utf8'))).toEqual(['old1abcd'])

    await writeLock(path, { pid: await deadPid(), host: 'some-other-host' })
    await expect(editSpokesFile(path, addOne('other1ab'), { lockTimeoutMs: 30 })).rejects.toMatchObject({ code: 'SLK_ERR_SPOKES_LOCK_TIMEOUT' })
  })

  test('many breakers of one stale lock: exactly one edit at a time, nothing lost', async () => {
    const { dir, path } = await tempSpokes()
    await writeLock(path, { pid: await deadPid() })
    const ids = Array.from({ length: 16 }, (_, i) => `brk${String(i).padStart(2, '0')}abc`)
    await Promise.all(ids.map(async (id) => editSpokesFile(path, addOne(id), { retryIntervalMs: 1 })))
    expect(tokenIds(await readFile(path, 'utf8')).sort()).toEqual(ids)
    expect(await readdir(dir)).toEqual(['spokes.yaml'])
  })

  test('a breaker that comes second finds the winner\'s new lock, leaves it alone and waits', async () => {
    const { path } = await tempSpokes()
    await writeLock(path, { pid: await deadPid() })
    let winner: Awaited<ReturnType<typeof acquireSpokesFileLock>> | undefined
    // The late breaker judged the lock stale; before it acts, another breaker breaks it and takes the lock.
    const late = acquireSpokesFileLock(path, { lockTimeoutMs: 100 }, {
      beforeBreak: async () => { winner ??= await acquireSpokesFileLock(path, { lockTimeoutMs: 0 }) },
    })
    await expect(late).rejects.toMatchObject({ code: 'SLK_ERR_SPOKES_LOCK_TIMEOUT' })
    expect(winner).toBeDefined()
    await winner?.assertHeld()
    await winner?.release()
    await expect(stat(`${path}.lock`)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  test('an edit that throws, or returns an invalid file, writes nothing and releases the lock', async () => {
    const { dir, path } = await tempSpokes()
    await expect(editSpokesFile(path, (text) => revokeSpokeToken(text, 'nosuchid'))).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_UNKNOWN_TOKEN' })
    await expect(editSpokesFile(path, () => 'spokes: [{name: A}]\n')).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_SPOKES_FILE' })
    expect(await readFile(path, 'utf8')).toBe(SPOKES)
    expect(await readdir(dir)).toEqual(['spokes.yaml'])
    const unchanged = await editSpokesFile(path, (text) => text, { lockTimeoutMs: 0 })
    expect(unchanged.changed).toBe(false)
    await expect(editSpokesFile(join(dir, 'missing.yaml'), (text) => text)).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_SPOKES_READ' })
    expect(await readdir(dir)).toEqual(['spokes.yaml'])
  })

  test('a lock broken under its owner is noticed before the owner writes', async () => {
    const { path } = await tempSpokes()
    const lock = await acquireSpokesFileLock(path)
    await lock.assertHeld()
    await writeLock(path, { pid: process.pid }) // what another process's breaker + new lock would leave
    await expect(lock.assertHeld()).rejects.toMatchObject({ code: 'SLK_ERR_SPOKES_LOCK_LOST' })
    await lock.release()
    // Not ours any more, so release() leaves it.
    expect(await readFile(`${path}.lock`, 'utf8')).toContain('"nonce":"n"')
  })

  test('rejects bad options, naming them', async () => {
    const { path } = await tempSpokes()
    await expect(editSpokesFile(path, (t) => t, { lockTimeoutMs: -1 })).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_INVALID_OPTION', message: expect.stringContaining('lockTimeoutMs') })
    await expect(editSpokesFile(path, (t) => t, { staleLockMs: 1.5 })).rejects.toMatchObject({ code: 'SLK_ERR_CONFIG_INVALID_OPTION', message: expect.stringContaining('staleLockMs') })
    expect(SPOKES_FILE_LOCK_DEFAULTS).toEqual({ lockTimeoutMs: 10_000, staleLockMs: 30_000, retryIntervalMs: 20 })
  })
})

describe('writeFileAtomic', () => {
  test('a failed rename leaves no temp file behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'slk-auth-atomic-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    // Renaming a file over a non-empty directory fails after the temp file was written.
    await mkdir(join(dir, 'target'))
    await writeFile(join(dir, 'target', 'inside'), 'x')
    await expect(writeFileAtomic(join(dir, 'target'), 'text')).rejects.toMatchObject({ code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/) })
    expect(await readdir(dir)).toEqual(['target'])
  })

  test('new files get the given mode (default 0600); existing files keep theirs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'slk-auth-atomic-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    await writeFileAtomic(join(dir, 'a'), 'one')
    expect((await stat(join(dir, 'a'))).mode & 0o777).toBe(0o600)
    await writeFile(join(dir, 'b'), 'old', { mode: 0o644 })
    await writeFileAtomic(join(dir, 'b'), 'new')
    expect((await stat(join(dir, 'b'))).mode & 0o777).toBe(0o644)
    expect(await readFile(join(dir, 'b'), 'utf8')).toBe('new')
    await writeFileAtomic(join(dir, 'c'), 'key', { mode: 0o400 })
    expect((await stat(join(dir, 'c'))).mode & 0o777).toBe(0o400)
  })
})
