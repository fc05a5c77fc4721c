import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { freePort, killAllProcesses, runSpokelink, spokesYaml, startFixtureExporter } from '@spokelink/testkit'
import type { FixtureExporter, LogEntry, ProcessExit, RunningProcess, RunProcessOptions } from '@spokelink/testkit'

// The `spokelink` CLI as users run it: real child processes of the built bin (run `pnpm build`
// first), exact exit codes, one-line errors on stderr, and pino JSON logs parsed from stdout.

/** The test runner's own SPOKELINK_* variables must not leak into the children. */
const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

const TOKEN_PATTERN = /^slk_[a-z0-9]+_[A-Za-z0-9_-]+$/

interface Tracked {
  proc: RunningProcess
  /** `token create` prints its token on stdout by design; nothing else may. */
  printsSecrets: boolean
}

const everyProcess: Tracked[] = []
/** Every token and join token handed out in this file. */
const secrets = new Set<string>()

function spokelink (args: readonly string[], options: RunProcessOptions = {}): RunningProcess {
  const proc = runSpokelink(args, { ...options, env: { ...CLEAN_ENV, ...options.env } })
  everyProcess.push({ proc, printsSecrets: args[0] === 'token' && args[1] === 'create' })
  return proc
}

interface Finished {
  proc: RunningProcess
  exit: ProcessExit
  stdout: string[]
  stderr: string[]
}

async function runToExit (args: readonly string[], options: RunProcessOptions = {}): Promise<Finished> {
  const proc = spokelink(args, options)
  const exit = await proc.waitForExit({ timeoutMs: 30_000 })
  return { proc, exit, stdout: proc.stdoutLines.filter((l) => l !== ''), stderr: proc.stderrLines.filter((l) => l !== '') }
}

/** Exit status `code`, and stderr is exactly one `error: …` line containing every `mention` (no stack trace). */
function expectOneLineError (result: Finished, code: number, ...mentions: string[]): string {
  const context = `spokelink ${result.proc.child.spawnargs.slice(2).join(' ')}\n${result.proc.tail()}`
  expect(result.exit, context).toEqual({ code, signal: null })
  expect(result.stderr, context).toHaveLength(1)
  const line = result.stderr[0] ?? ''
  expect(line).toMatch(/^error: /)
  for (const mention of mentions) expect(line).toContain(mention)
  expect(result.proc.output()).not.toMatch(/\n\s+at .+:\d+:\d+\)?\n/)
  return line
}

async function createToken (spokesFile: string, spoke: string, extra: string[] = []): Promise<{ token: string, joinToken?: string, id: string, spoke: string }> {
  const result = await runToExit(['token', 'create', '--spokes', spokesFile, '--spoke', spoke, '--output', 'json', ...extra])
  expect(result.exit, result.proc.tail()).toEqual({ code: 0, signal: null })
  expect(result.stderr).toEqual([])
  expect(result.stdout).toHaveLength(1)
  const parsed = JSON.parse(result.stdout[0] ?? '') as { token: string, joinToken?: string, id: string, spoke: string }
  secrets.add(parsed.token)
  if (parsed.joinToken !== undefined) secrets.add(parsed.joinToken)
  return parsed
}

/** Starts `spokelink server` with both listeners on loopback port 0; `port` is the agents' port, `adminPort` the operators'. */
async function startServer (args: string[], options: RunProcessOptions = {}): Promise<{ server: RunningProcess, port: number, adminPort: number }> {
  const server = spokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', ...args], options)
  const listening = await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'the server\'s listening line', timeoutMs: 30_000 })
  const admin = await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'admin', { what: 'the admin listening line', timeoutMs: 30_000 })
  return { server, port: Number(listening.port), adminPort: Number(admin.port) }
}

const isMsg = (msg: string) => (e: LogEntry): boolean => e.msg === msg

describe('spokelink CLI (child processes)', () => {
  let dir: string
  let exporter: FixtureExporter
  let fileCount = 0

  /** Writes `text` to a fresh file in the test directory and returns its path. */
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, `${String(++fileCount)}-${name}`)
    await writeFile(path, text)
    return path
  }

  /** A spokes file with one spoke `orion-aws` (prometheus on a fresh data-plane port). */
  const spokesFile = async (): Promise<{ path: string, dataPort: number }> => {
    const dataPort = await freePort()
    const path = await file('spokes.yaml', spokesYaml([{ name: 'orion-aws', labels: { cluster: 'orion-aws' }, tokens: [], ports: [{ upstream: 'prometheus', port: dataPort }] }]))
    return { path, dataPort }
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spokelink-cli-'))
    exporter = await startFixtureExporter()
  })

  // Each test's own processes, checked after it (no test depends on another having run): every one
  // is stopped first, so its whole output is in; then no token or join token handed out in this file
  // may appear in any output but token create's stdout.
  afterEach(async () => {
    await killAllProcesses()
    const started = everyProcess.splice(0)
    expect(started.filter(({ proc }) => proc.exit === undefined).map(({ proc }) => proc.name)).toEqual([])
    // A test that created tokens must have recorded them, or this check would prove nothing.
    if (started.some(({ printsSecrets }) => printsSecrets)) expect(secrets.size).toBeGreaterThan(0)
    const secretParts = [...secrets].flatMap((s) => s.startsWith('slk_') ? [s, s.split('_').slice(2).join('_')] : [s])
    for (const { proc, printsSecrets } of started) {
      const text = printsSecrets ? proc.stderrLines.join('\n') : proc.output()
      for (const secret of secretParts) expect(text.includes(secret), `${proc.name} printed a secret`).toBe(false)
    }
  })

  afterAll(async () => {
    await killAllProcesses()
    await exporter?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('usage errors exit 2 with one line naming the flag, env var or config file', async () => {
    const [bogus, noToken, badFlag, badEnv] = await Promise.all([
      runToExit(['server', '--bogus']),
      runToExit(['agent', '--server', 'ws://127.0.0.1:9/connect', '--upstream', 'prometheus=127.0.0.1:9']),
      runToExit(['agent', '--server', 'ws://127.0.0.1:9/connect', '--token', 'slk_abc_notarealsecret', '--keepalive', 'fast']),
      runToExit(['agent', '--server', 'ws://127.0.0.1:9/connect', '--token', 'slk_abc_notarealsecret'], { env: { SPOKELINK_KEEPALIVE: 'fast' } }),
    ])
    expectOneLineError(bogus, 2, '--bogus')
    expectOneLineError(noToken, 2, '--token')
    expectOneLineError(badFlag, 2, '--keepalive (flag): expected a duration', '"fast"')
    expectOneLineError(badEnv, 2, 'SPOKELINK_KEEPALIVE (env): expected a duration', '"fast"')

    const { path: spokes } = await spokesFile()
    const config = await file('server.yaml', 'listen: 127.0.0.1:0\nkeepalive: 20s\nbogus-key: 1\n')
    const unknownKey = await runToExit(['server', '--spokes', spokes, '--config', config])
    expectOneLineError(unknownKey, 2, config, 'bogus-key')
    // Rejected before anything was bound.
    expect(unknownKey.proc.logs.some(isMsg('listening'))).toBe(false)
  })

  test('precedence: flag beats env beats config file beats default (server \'starting\' line)', async () => {
    const { path: spokes } = await spokesFile()
    const config = await file('server.yaml', [
      'listen: 127.0.0.1:0',
      'admin-listen: 127.0.0.1:0',
      'keepalive: 20s',
      'shutdown-grace: 3s',
      'sd-target: "file-{spoke}:{port}"',
      '',
    ].join('\n'))
    const { server, adminPort } = await startServer(['--spokes', spokes, '--config', config, '--keepalive', '30s'], {
      env: { SPOKELINK_KEEPALIVE: '25s', SPOKELINK_SHUTDOWN_GRACE: '4s' },
    })
    const starting = await server.waitForLog(isMsg('starting'))
    expect(starting.settings).toMatchObject({
      keepalive: { value: 30_000, source: 'flag' },
      'shutdown-grace': { value: 4000, source: 'env' },
      'sd-target': { value: 'file-{spoke}:{port}', source: 'file' },
      spokes: { value: spokes, source: 'flag' },
      'log-level': { value: 'info', source: 'default' },
    })
    // --listen on the command line beats the file's.
    expect(starting.settings).toMatchObject({ listen: { value: '127.0.0.1:0', source: 'flag' } })
    // The file's value is not only reported but used.
    const sd = await (await fetch(`http://127.0.0.1:${adminPort}/v1/sd`)).json() as Array<{ targets: string[] }>
    expect(sd.map((g) => g.targets)).toEqual([[expect.stringMatching(/^file-orion-aws:\d+$/)]])
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })

    // Without the flag, the env var wins over the file; without both, the file wins over the default.
    const envOnly = spokelink(['server', '--spokes', spokes, '--config', config], { env: { SPOKELINK_KEEPALIVE: '25s' } })
    const envStarting = await envOnly.waitForLog(isMsg('starting'))
    expect(envStarting.settings).toMatchObject({
      keepalive: { value: 25_000, source: 'env' },
      listen: { value: '127.0.0.1:0', source: 'file' },
      'shutdown-grace': { value: 3000, source: 'file' },
    })
    await envOnly.waitForLog(isMsg('listening'))
    expect(await envOnly.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })

  test('a broken spokes file stops the server with exit 2 and one line naming the file and field', async () => {
    const spoke = (name: string, port: number, extra: string[] = []): string[] => [
      `  - name: ${name}`,
      '    tokens: []',
      ...extra,
      '    ports:',
      `      - {upstream: prometheus, listen: "127.0.0.1:${port}"}`,
    ]
    const port = await freePort()
    const badYaml = await file('bad-yaml.yaml', 'spokes:\n  - name: orion-aws\n   tokens: [\n')
    const unknownKey = await file('unknown-key.yaml', ['spokes:', ...spoke('orion-aws', port, ['    colour: red']), ''].join('\n'))
    const badName = await file('bad-name.yaml', ['spokes:', ...spoke('Orion_AWS', port), ''].join('\n'))
    const duplicatePort = await file('dup-port.yaml', ['spokes:', ...spoke('orion-aws', port), ...spoke('orion-gcp', port), ''].join('\n'))
    const results = await Promise.all([badYaml, unknownKey, badName, duplicatePort].map(async (path) => runToExit(['server', '--listen', '127.0.0.1:0', '--spokes', path])))
    const [yaml, key, name, dup] = results as [Finished, Finished, Finished, Finished]
    expect(expectOneLineError(yaml, 2, badYaml)).toMatch(/YAML/i)
    expectOneLineError(key, 2, unknownKey, 'spokes[0].colour')
    expectOneLineError(name, 2, badName, 'spokes[0].name', 'Orion_AWS')
    expectOneLineError(dup, 2, duplicatePort, 'spokes[1].ports[0].listen', `127.0.0.1:${port}`)
    for (const result of results) expect(result.proc.logs.some(isMsg('listening'))).toBe(false)
  })

  test('token create / list / revoke edit the spokes file in place and print the secret once', async () => {
    const before = [
      '# spokes of the e2e test: this comment must survive',
      'spokes:',
      '  # the AWS one',
      '  - name: orion-aws',
      '    labels: {cluster: orion-aws, env: prod}   # inline comment',
      '    tokens:',
      '      - {id: old1, sha256: "0000000000000000000000000000000000000000000000000000000000000000"}',
      '    ports:',
      '      - {upstream: prometheus, listen: "127.0.0.1:19091"}',
      '',
      '  # the GCP one, block style',
      '  - name: orion-gcp',
      '    labels:',
      '      cluster: orion-gcp',
      '    tokens:',
      '      - id: keep2',
      '        sha256: "1111111111111111111111111111111111111111111111111111111111111111"',
      '    ports:',
      '      - upstream: prometheus',
      '        listen: "127.0.0.1:19092"',
      '',
    ].join('\n')
    const spokes = await file('spokes.yaml', before)

    const unknown = await runToExit(['token', 'create', '--spokes', spokes, '--spoke', 'orion-nowhere', '--output', 'json'])
    expectOneLineError(unknown, 2, '"orion-nowhere"')
    expect(unknown.stdout).toEqual([])
    expect(await readFile(spokes, 'utf8')).toBe(before)

    const created = await createToken(spokes, 'orion-aws')
    expect(created.token).toMatch(TOKEN_PATTERN)
    expect(created.spoke).toBe('orion-aws')
    const [, id, secret] = /^slk_([a-z0-9]+)_(.+)$/.exec(created.token) ?? []
    expect(created.id).toBe(id)
    const after = await readFile(spokes, 'utf8')
    // Exactly one line was added (the new token, in orion-aws's list); every other byte is untouched.
    const beforeLines = before.split('\n')
    const afterLines = after.split('\n')
    expect(afterLines).toHaveLength(beforeLines.length + 1)
    const added = afterLines.findIndex((line, i) => line !== beforeLines[i])
    expect(added).toBe(7)
    expect([...afterLines.slice(0, added), ...afterLines.slice(added + 1)].join('\n')).toBe(before)
    const sha256 = createHash('sha256').update(secret ?? '', 'utf8').digest('hex')
    expect(afterLines[added]).toContain(sha256)
    expect(afterLines[added]).toContain(created.id)
    expect(after).not.toContain(secret)
    expect(after).not.toContain(created.token)

    const list = async (): Promise<Array<{ spoke: string, id: string, state: string }>> => {
      const result = await runToExit(['token', 'list', '--spokes', spokes, '--output', 'json'])
      expect(result.exit, result.proc.tail()).toEqual({ code: 0, signal: null })
      expect(result.stdout).toHaveLength(1)
      return (JSON.parse(result.stdout[0] ?? '') as { tokens: Array<{ spoke: string, id: string, state: string }> }).tokens
    }
    expect(await list()).toEqual(expect.arrayContaining([
      expect.objectContaining({ spoke: 'orion-aws', id: created.id, state: 'active' }),
      expect.objectContaining({ spoke: 'orion-aws', id: 'old1', state: 'active' }),
      expect.objectContaining({ spoke: 'orion-gcp', id: 'keep2', state: 'active' }),
    ]))

    const revoke = await runToExit(['token', 'revoke', '--spokes', spokes, created.id])
    expect(revoke.exit, revoke.proc.tail()).toEqual({ code: 0, signal: null })
    const states = Object.fromEntries((await list()).map((row) => [row.id, row.state]))
    expect(states).toEqual({ old1: 'active', [created.id]: 'revoked', keep2: 'active' })
    // The GCP spoke and the comments are still byte-identical.
    const revoked = await readFile(spokes, 'utf8')
    expect(revoked).toContain(beforeLines.slice(10).join('\n'))
    expect(revoked.startsWith(beforeLines.slice(0, 7).join('\n'))).toBe(true)
  })

  test('live reload: a new token connects without restart; revoking it closes the session and later attempts get 403', async () => {
    const { path: spokes, dataPort } = await spokesFile()
    const { server, port } = await startServer(['--spokes', spokes, '--max-connections-per-port', '7'], { env: { SPOKELINK_DATA_IDLE_TIMEOUT: '90s' } })
    const created = await createToken(spokes, 'orion-aws')
    await server.waitForLog(isMsg('spokes file reloaded'), { what: 'the server to reload the spokes file', timeoutMs: 30_000 })

    const agent = spokelink(['agent', '--server', `ws://127.0.0.1:${port}/connect`, '--upstream', `prometheus=${exporter.target}`], {
      env: { SPOKELINK_TOKEN: created.token },
    })
    const connected = await agent.waitForLog(isMsg('connected'), { what: 'the agent to connect', timeoutMs: 30_000 })
    expect(connected).toMatchObject({ spoke: 'orion-aws' })
    await server.waitForLog((e) => e.msg === 'session opened' && e.spoke === 'orion-aws', { what: 'the session to open' })
    // The data-plane limits from the flag and the env var reach the port.
    expect(server.logs.find(isMsg('data-plane port bound'))).toMatchObject({ upstream: 'prometheus', maxConnections: 7, idleTimeoutMs: 90_000 })
    // The tunnel carries traffic.
    const res = await fetch(`http://127.0.0.1:${dataPort}/metrics`)
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('fixture_up 1')

    const revoke = await runToExit(['token', 'revoke', '--spokes', spokes, created.id])
    expect(revoke.exit, revoke.proc.tail()).toEqual({ code: 0, signal: null })
    // Deadlines, not measurements: the reload and the revocation are events, whenever a loaded machine gets to them.
    const revokedLog = await server.waitForLog(isMsg('session revoked'), { what: 'the exit-node to revoke the session', timeoutMs: 30_000 })
    expect(revokedLog).toMatchObject({ spoke: 'orion-aws', tokenId: created.id })
    await agent.waitForLog((e) => e.msg === 'disconnected', { what: 'the agent\'s session to close', timeoutMs: 30_000 })
    // Reconnecting is refused before the upgrade with 403, on both sides.
    const refused = await server.waitForLog((e) => e.msg === 'agent refused', { what: 'a refused reconnect', timeoutMs: 30_000 })
    expect(refused).toMatchObject({ status: 403, reason: 'token revoked', tokenId: created.id })
    const forbidden = await agent.waitForLog((e) => e.msg === 'disconnected' && String(e.reason).includes('refused the token (403)'), {
      what: 'the agent to log a 403 on reconnect',
      timeoutMs: 30_000,
    })
    expect(forbidden).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', reason: expect.stringContaining('token revoked') })
    // The data-plane port is gone with the session: refused at once.
    await expect(fetch(`http://127.0.0.1:${dataPort}/metrics`)).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } })

    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })

  test('a control port in use: the second server exits 1 with one line', async () => {
    const { path: spokes } = await spokesFile()
    const { server, port } = await startServer(['--spokes', spokes])
    const second = await runToExit(['server', '--listen', `127.0.0.1:${port}`, '--spokes', spokes])
    const line = expectOneLineError(second, 1)
    expect(line).toBe(`error: cannot listen on 127.0.0.1:${port}: the address is already in use`)
    expect(server.exit).toBeUndefined()
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })

  test('plain ws:// to a non-loopback host without --insecure is refused before dialing (exit 2)', async () => {
    const result = await runToExit(['agent', '--server', 'ws://10.1.2.3:8123/connect', '--token', 'slk_abc_notarealsecret', '--upstream', `prometheus=${exporter.target}`])
    expectOneLineError(result, 2, '--insecure', '10.1.2.3')
    // No connection attempt was logged.
    expect(result.proc.logs.filter((e) => e.msg === 'connected' || e.msg === 'disconnected')).toEqual([])
  })

  test('wss with --auto-tls: a join token pins the CA; without a CA the agent says --ca-file; SIGTERM exits 0', async () => {
    const { path: spokes, dataPort } = await spokesFile()
    const tlsDir = join(dir, 'auto-tls')
    const { server, port } = await startServer(['--spokes', spokes, '--auto-tls', tlsDir, '--auto-tls-hosts', '127.0.0.1,localhost'])
    const listening = await server.waitForLog(isMsg('listening'))
    expect(listening.tls).toBe(true)
    // A client offering Node's default order (AES-256 first) still gets AES-128-GCM: the server's order wins.
    const probe = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false })
    await once(probe, 'secureConnect')
    expect(probe.getCipher().name).toBe('TLS_AES_128_GCM_SHA256')
    probe.destroy()
    const serverUrl = `wss://127.0.0.1:${port}/connect`
    const created = await createToken(spokes, 'orion-aws', ['--server', serverUrl, '--ca-file', join(tlsDir, 'ca.crt')])
    expect(created.joinToken).toMatch(/^slkj1\./)
    await server.waitForLog(isMsg('spokes file reloaded'), { what: 'the server to reload the spokes file', timeoutMs: 30_000 })

    // Join token via env, no --ca-file and no --server: the pinned CA is enough.
    const joined = spokelink(['agent', '--upstream', `prometheus=${exporter.target}`, '--name', 'joined'], { env: { SPOKELINK_JOIN: created.joinToken } })
    expect(await joined.waitForLog(isMsg('connected'), { what: 'the join-token agent to connect', timeoutMs: 30_000 })).toMatchObject({ spoke: 'orion-aws' })
    expect((await joined.waitForLog(isMsg('starting'))).caPinned).toBe(true)
    const res = await fetch(`http://127.0.0.1:${dataPort}/metrics`)
    expect(res.status).toBe(200)
    const body = await res.text()
    expect(body).toContain('fixture_temperature_celsius{room="lab",sensor="a"} 21.5')
    expect(body).toMatch(/^fixture_requests_total [1-9]\d*$/m)

    // The same server URL with a plain token and no CA: the self-signed chain is rejected with a hint.
    const untrusted = spokelink(['agent', '--server', serverUrl, '--upstream', `prometheus=${exporter.target}`, '--name', 'untrusted'], { env: { SPOKELINK_TOKEN: created.token } })
    const failure = await untrusted.waitForLog((e) => e.msg === 'disconnected', { what: 'the CA-less agent to fail', timeoutMs: 30_000 })
    expect(failure).toMatchObject({ code: 'SLK_ERR_AGENT_CONNECT', reason: expect.stringContaining('--ca-file') })
    expect(untrusted.logs.some(isMsg('connected'))).toBe(false)
    expect(await untrusted.kill('SIGTERM')).toEqual({ code: 0, signal: null })

    // With --ca-file it connects.
    const trusted = spokelink(['agent', '--server', serverUrl, '--ca-file', join(tlsDir, 'ca.crt'), '--upstream', `prometheus=${exporter.target}`, '--name', 'trusted'], { env: { SPOKELINK_TOKEN: created.token } })
    expect(await trusted.waitForLog(isMsg('connected'), { what: 'the --ca-file agent to connect', timeoutMs: 30_000 })).toMatchObject({ spoke: 'orion-aws' })

    // SIGTERM: agents and server exit 0.
    expect(await trusted.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await joined.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(server.logs.some(isMsg('shut down'))).toBe(true)
  })

  test('spokelink demo exits 0 and prints a federated sample', async () => {
    const demo = await runToExit(['demo'])
    expect(demo.exit, demo.proc.tail()).toEqual({ code: 0, signal: null })
    expect(demo.stdout.some((line) => line.startsWith('up{cluster="demo-spoke"'))).toBe(true)
    expect(demo.stderr).toEqual([])
  })
})
