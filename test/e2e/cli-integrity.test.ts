/**
 * Issue 7 ("Nothing lost, nobody in"), items 1 and 9 on the real CLI: concurrent `spokelink token create`/`revoke`
 * processes lose no edit of the spokes file; a held lock fails one command cleanly; SIGHUP reloads the exit-node's
 * TLS files and the agent's token file instead of killing them. Child processes of the built bin (`pnpm build`).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { createTlsFixture, freePort, killAllProcesses, runSpokelink, servedFingerprint, startFixtureExporter } from '@spokelink/testkit'
import type { FixtureExporter, LogEntry, ProcessExit, RunningProcess, RunProcessOptions } from '@spokelink/testkit'

/** The test runner's own SPOKELINK_* variables must not leak into the children. */
const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

function spokelink (args: readonly string[], options: RunProcessOptions = {}): RunningProcess {
  return runSpokelink(args, { ...options, env: { ...CLEAN_ENV, ...options.env } })
}

interface Finished { exit: ProcessExit, stdout: string[], stderr: string[], tail: string }

async function runToExit (args: readonly string[]): Promise<Finished> {
  const proc = spokelink(args)
  const exit = await proc.waitForExit({ timeoutMs: 60_000 })
  return { exit, stdout: proc.stdoutLines.filter((l) => l !== ''), stderr: proc.stderrLines.filter((l) => l !== ''), tail: proc.tail() }
}

const isMsg = (msg: string) => (e: LogEntry): boolean => e.msg === msg

/** A spokes file with spoke `orion-aws` and the given tokens. */
function spokesText (tokens: Array<{ id: string, sha256: string }>, dataPort = 19_090): string {
  return [
    '# kept by hand: this comment must survive every edit',
    'spokes:',
    '  - name: orion-aws',
    '    tokens:',
    ...tokens.map((t) => `      - {id: ${t.id}, sha256: "${t.sha256}"}`),
    '    ports:',
    `      - {upstream: prometheus, listen: "127.0.0.1:${dataPort}"}`,
    '',
  ].join('\n')
}

describe('spokes-file integrity and SIGHUP (child processes)', () => {
  let dir: string
  let exporter: FixtureExporter
  let count = 0
  const freshDir = async (): Promise<string> => {
    const sub = join(dir, String(++count))
    await mkdir(sub)
    return sub
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spokelink-integrity-'))
    exporter = await startFixtureExporter()
  })

  afterAll(async () => {
    await killAllProcesses()
    await exporter?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  // Issue 7 item 1: two creates at once lost 8 of 20 tokens; a revoke racing a create lost 3 of 10 revocations.
  test('20 concurrent token create and token revoke processes: every printed token is in the file, every revoked id is revoked', async () => {
    const sub = await freshDir()
    const path = join(sub, 'spokes.yaml')
    const existing = Array.from({ length: 6 }, (_, i) => ({ id: `prev${String(i)}abc`, sha256: createSpokeToken().sha256 }))
    await writeFile(path, spokesText(existing))

    // Twenty processes take the lock in turns, in no order: on a loaded machine the last one can wait longer than
    // the default --lock-timeout (10 s, its own test is below). What this test asserts is that no edit is lost.
    const wait = ['--lock-timeout', '50s']
    const creates = Array.from({ length: 14 }, async () => runToExit(['token', 'create', '--spokes', path, '--spoke', 'orion-aws', '--output', 'json', ...wait]))
    const revokes = existing.map(async (t) => runToExit(['token', 'revoke', '--spokes', path, t.id, '--output', 'json', ...wait]))
    const results = await Promise.all([...creates, ...revokes])
    for (const result of results) expect(result.exit, result.tail).toEqual({ code: 0, signal: null })
    const createdIds = results.slice(0, 14).map((r) => (JSON.parse(r.stdout[0] ?? '{}') as { id: string }).id)
    expect(new Set(createdIds).size).toBe(14)

    const text = await readFile(path, 'utf8')
    expect(text.startsWith('# kept by hand: this comment must survive every edit\n')).toBe(true)
    const tokens = parseSpokesConfig(text, path).spokes[0]?.tokens ?? []
    expect(tokens.map((t) => t.id).sort()).toEqual([...existing.map((t) => t.id), ...createdIds].sort())
    expect(tokens.filter((t) => t.revoked === true).map((t) => t.id).sort()).toEqual(existing.map((t) => t.id).sort())
    // No lock file and no temp file is left beside the spokes file.
    expect(await readdir(sub)).toEqual(['spokes.yaml'])
  })

  test('a lock held by a live process: create and revoke fail after --lock-timeout with one line, exit 1, and change nothing; a dead owner\'s lock is broken', async () => {
    const sub = await freshDir()
    const path = join(sub, 'spokes.yaml')
    const before = spokesText([{ id: 'held1abc', sha256: createSpokeToken().sha256 }])
    await writeFile(path, before)
    await writeFile(`${path}.lock`, `${JSON.stringify({ pid: process.pid, host: hostname(), nonce: 'test' })}\n`)

    const [create, revoke] = await Promise.all([
      runToExit(['token', 'create', '--spokes', path, '--spoke', 'orion-aws', '--lock-timeout', '300ms']),
      runToExit(['token', 'revoke', '--spokes', path, 'held1abc', '--lock-timeout', '300ms']),
    ])
    for (const result of [create, revoke]) {
      expect(result.exit, result.tail).toEqual({ code: 1, signal: null })
      expect(result.stdout).toEqual([])
      // The path may come out partly redacted (the CLI's error redaction takes mkdtemp's random suffix for a secret).
      expect(result.stderr).toHaveLength(1)
      expect(result.stderr[0]).toMatch(/^error: \S*spokes\.yaml: another edit \(process \d+ on \S+\) held \S*spokes\.yaml\.lock for more than 300 ms; try again, or remove the lock file if no edit is running$/)
      expect(result.stderr[0]).toContain(`(process ${process.pid} on ${hostname()})`)
    }
    expect(await readFile(path, 'utf8')).toBe(before)

    // The owner process is gone: the next command breaks the lock and goes through.
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await once(child, 'exit')
    await writeFile(`${path}.lock`, `${JSON.stringify({ pid: child.pid, host: hostname(), nonce: 'test' })}\n`)
    const revoked = await runToExit(['token', 'revoke', '--spokes', path, 'held1abc', '--lock-timeout', '300ms'])
    expect(revoked.exit, revoked.tail).toEqual({ code: 0, signal: null })
    expect(parseSpokesConfig(await readFile(path, 'utf8'), path).spokes[0]?.tokens[0]?.revoked).toBe(true)
    expect(await readdir(sub)).toEqual(['spokes.yaml'])
  })

  test('SIGHUP on the server reloads --tls-cert/--tls-key: new handshakes get the new certificate, a bad one is refused, the process lives on', async () => {
    const sub = await freshDir()
    const spokes = join(sub, 'spokes.yaml')
    await writeFile(spokes, spokesText([], await freePort()))
    const first = await createTlsFixture({ hosts: ['127.0.0.1', 'localhost'] })
    const second = await createTlsFixture({ hosts: ['127.0.0.1', 'localhost', 'hub-rotated'] })
    const certPath = join(sub, 'tls.crt')
    const keyPath = join(sub, 'tls.key')
    await writeFile(certPath, first.certPem)
    await writeFile(keyPath, first.keyPem)
    const server = spokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokes, '--tls-cert', certPath, '--tls-key', keyPath])
    const port = Number((await server.waitForLog(isMsg('listening'), { what: 'the server\'s listening line', timeoutMs: 30_000 })).port)
    expect(await servedFingerprint(port)).toBe(new X509Certificate(first.certPem).fingerprint256)

    await writeFile(certPath, second.certPem)
    await writeFile(keyPath, second.keyPem)
    server.child.kill('SIGHUP')
    const done = await server.waitForLog(isMsg('reload done'), { what: 'the SIGHUP reload', timeoutMs: 30_000 })
    expect(done).toMatchObject({ spokes: 'unchanged', tls: 'reloaded' })
    expect(server.logs.filter(isMsg('reload requested'))).toEqual([expect.objectContaining({ signal: 'SIGHUP' })])
    expect(await servedFingerprint(port)).toBe(new X509Certificate(second.certPem).fingerprint256)

    // A key that does not match the certificate: logged, and the current pair stays in use.
    await writeFile(keyPath, first.keyPem)
    server.child.kill('SIGHUP')
    await server.waitForLog((e) => e.msg === 'reload done' && e.tls === 'failed', { what: 'the failed TLS reload', timeoutMs: 30_000 })
    expect(server.logs.find(isMsg('tls reload failed; keeping the current certificate'))).toMatchObject({ level: 50, err: { code: 'SLK_ERR_EXIT_TLS_RELOAD' } })
    expect(await servedFingerprint(port)).toBe(new X509Certificate(second.certPem).fingerprint256)

    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })

  test('a SIGHUP as soon as the agent logs starting is a reload, not a stop', async () => {
    const sub = await freshDir()
    const tokenFile = join(sub, 'token')
    await writeFile(tokenFile, `${createSpokeToken().token}\n`)
    const agent = spokelink(['agent', '--server', 'ws://127.0.0.1:9/connect', '--token-file', tokenFile, '--upstream', `prometheus=${exporter.target}`])
    await agent.waitForLog(isMsg('starting'), { what: 'the agent\'s starting line', timeoutMs: 30_000 })
    agent.child.kill('SIGHUP')
    expect(await agent.waitForLog(isMsg('reload done'), { what: 'the early reload', timeoutMs: 30_000 })).toMatchObject({ tokenFile: 'reloaded' })
    expect(agent.exit).toBeUndefined()
    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })

  test('SIGHUP on the agent re-reads --token-file for its next connection', async () => {
    const sub = await freshDir()
    const good = createSpokeToken()
    const spokes = join(sub, 'spokes.yaml')
    await writeFile(spokes, spokesText([good], await freePort()))
    const tokenFile = join(sub, 'token')
    await writeFile(tokenFile, `${createSpokeToken().token}\n`) // not in the spokes file: 401
    const server = spokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokes])
    const port = Number((await server.waitForLog(isMsg('listening'), { what: 'the server\'s listening line', timeoutMs: 30_000 })).port)
    const agent = spokelink(['agent', '--server', `ws://127.0.0.1:${port}/connect`, '--token-file', tokenFile, '--upstream', `prometheus=${exporter.target}`])
    expect(await agent.waitForLog(isMsg('disconnected'), { what: 'the agent to be refused', timeoutMs: 30_000 })).toMatchObject({ code: 'SLK_ERR_AGENT_UNAUTHORIZED' })

    // A malformed file is refused with one logged line (never its content); the agent keeps its token and runs on.
    await writeFile(tokenFile, 'slk_not-a-token-secretpart\n')
    agent.child.kill('SIGHUP')
    expect(await agent.waitForLog(isMsg('token file reload failed; keeping the current token'), { what: 'the refused reload', timeoutMs: 30_000 }))
      .toMatchObject({ level: 50, err: { code: 'SLK_ERR_AUTH_TOKEN_MALFORMED' } })
    expect(agent.output()).not.toContain('secretpart')

    await writeFile(tokenFile, `${good.token}\n`)
    agent.child.kill('SIGHUP')
    expect(await agent.waitForLog((e) => e.msg === 'reload done' && e.tokenFile === 'reloaded', { what: 'the agent\'s reload', timeoutMs: 30_000 })).toBeDefined()
    expect(await agent.waitForLog(isMsg('connected'), { what: 'the agent to connect with the new token', timeoutMs: 30_000 })).toMatchObject({ spoke: 'orion-aws' })
    // Neither token appears in the agent's output.
    expect(agent.output()).not.toContain(good.token.split('_').slice(2).join('_'))

    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })
})
