import { createServer } from 'node:net'
import type { Server } from 'node:net'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createSpokeToken, encodeJoinToken } from '@spokelink/auth'
import { createTlsFixture, killAllProcesses, listenLoopback, runSpokelink } from '@spokelink/testkit'
import type { TlsFixture } from '@spokelink/testkit'

// `spokelink server|agent --check-config`: every flag, env var and file checked as a start would, the effective
// settings printed as one JSON document with secrets redacted, exit 0 or 2, and nothing bound, dialed or written.

const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

interface Checked {
  code: number | null
  stdout: string
  stderr: string[]
}

async function check (args: readonly string[]): Promise<Checked> {
  const proc = runSpokelink([...args, '--check-config'], { env: CLEAN_ENV })
  const exit = await proc.waitForExit({ timeoutMs: 30_000 })
  return { code: exit.code, stdout: proc.stdoutLines.join('\n'), stderr: proc.stderrLines.filter((line) => line !== '') }
}

function expectOneLine (result: Checked, ...mentions: string[]): void {
  expect(result.code, result.stderr.join('\n')).toBe(2)
  expect(result.stderr).toHaveLength(1)
  expect(result.stderr[0]).toMatch(/^error: /)
  for (const mention of mentions) expect(result.stderr[0]).toContain(mention)
  expect(result.stdout).toBe('')
}

describe('--check-config', () => {
  let dir: string
  let tls: TlsFixture
  let otherTls: TlsFixture
  /** A port something already listens on: a start would fail with EADDRINUSE, a check must not care. */
  let busy: Server
  let busyPort: number
  let spokesPath: string
  const spoke = createSpokeToken()

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spokelink-check-'))
    tls = await createTlsFixture({ hosts: ['hub.example.com'] })
    otherTls = await createTlsFixture({ hosts: ['other.example.com'] })
    busy = createServer()
    busyPort = await listenLoopback(busy)
    spokesPath = join(dir, 'spokes.yaml')
    await writeFile(spokesPath, [
      'spokes:',
      '  - name: orion-aws',
      `    tokens: [{id: ${spoke.id}, sha256: "${spoke.sha256}"}]`,
      '    ports: [{upstream: prometheus, listen: "0.0.0.0:19090"}, {upstream: node, listen: "0.0.0.0:19190"}]',
      '  - name: orion-gcp',
      '',
    ].join('\n'))
    await writeFile(join(dir, 'tls.crt'), tls.certPem)
    await writeFile(join(dir, 'tls.key'), tls.keyPem)
    await writeFile(join(dir, 'other.key'), otherTls.keyPem)
    await writeFile(join(dir, 'ca.crt'), tls.caPem)
  })

  afterAll(async () => {
    await killAllProcesses()
    busy?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('server: prints the effective settings, the spokes and the certificate, on a port already in use', async () => {
    const result = await check(['server', '--listen', `127.0.0.1:${busyPort}`, '--spokes', spokesPath,
      '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key'), '--keepalive', '20s', '--tls-lean-buffers'])
    expect(result.code, result.stderr.join('\n')).toBe(0)
    const report = JSON.parse(result.stdout) as Record<string, unknown>
    expect(report).toMatchObject({
      ok: true,
      command: 'server',
      settings: {
        listen: { value: `127.0.0.1:${busyPort}`, source: 'flag' },
        keepalive: { value: 20_000, source: 'flag' },
        'shutdown-grace': { value: 10_000, source: 'default' },
        'tls-lean-buffers': { value: true, source: 'flag' },
      },
      spokes: [
        { name: 'orion-aws', tokens: 1, ports: [{ upstream: 'prometheus', listen: '0.0.0.0:19090' }, { upstream: 'node', listen: '0.0.0.0:19190' }] },
        { name: 'orion-gcp', tokens: 0, ports: [] },
      ],
      tls: { mode: 'files', certificate: { subjectAltName: 'DNS:hub.example.com' } },
    })
    expect(result.stdout).not.toContain('PRIVATE KEY')
    expect(result.stdout).not.toContain(spoke.sha256)
  })

  test('server --auto-tls: reports what a start would make, and writes nothing', async () => {
    const autoDir = join(dir, 'auto', 'tls')
    const result = await check(['server', '--spokes', spokesPath, '--auto-tls', autoDir, '--auto-tls-hosts', 'hub.example.com,10.0.0.1'])
    expect(result.code, result.stderr.join('\n')).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ tls: { mode: 'auto', dir: autoDir, hosts: ['hub.example.com', '10.0.0.1'], ca: 'create' } })
    expect(existsSync(join(dir, 'auto'))).toBe(false)

    // An existing CA is read and reported with its pin.
    const kept = join(dir, 'kept')
    await mkdir(kept)
    await writeFile(join(kept, 'ca.crt'), tls.caPem)
    await writeFile(join(kept, 'ca.key'), tls.caKeyPem)
    const existing = await check(['server', '--spokes', spokesPath, '--auto-tls', kept, '--auto-tls-hosts', 'hub.example.com'])
    expect(existing.code, existing.stderr.join('\n')).toBe(0)
    expect(JSON.parse(existing.stdout)).toMatchObject({ tls: { ca: 'existing', caSha256: tls.caSha256 } })
    expect((await readdir(kept)).sort()).toEqual(['ca.crt', 'ca.key'])
  })

  test('server: a bad spokes file, TLS files that do not match, a half CA or a bad host exit 2 with one line', async () => {
    const broken = join(dir, 'broken.yaml')
    await writeFile(broken, 'spokes:\n  - name: Not_A_Label\n')
    const halfCa = join(dir, 'half')
    await mkdir(halfCa)
    await writeFile(join(halfCa, 'ca.crt'), tls.caPem)
    const [spokes, mismatch, notCert, half, badHost, conflict] = await Promise.all([
      check(['server', '--spokes', broken]),
      check(['server', '--spokes', spokesPath, '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'other.key')]),
      check(['server', '--spokes', spokesPath, '--tls-cert', join(dir, 'tls.key'), '--tls-key', join(dir, 'tls.key')]),
      check(['server', '--spokes', spokesPath, '--auto-tls', halfCa]),
      check(['server', '--spokes', spokesPath, '--auto-tls', join(dir, 'new'), '--auto-tls-hosts', 'bad host!']),
      check(['server', '--spokes', spokesPath, '--auto-tls', join(dir, 'new'), '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key')]),
    ])
    // Not the whole path: the CLI redacts any 22+ character base64url run in a message, and mkdtemp's name is one.
    expectOneLine(spokes, 'broken.yaml', 'spokes[0].name')
    expectOneLine(mismatch, '--tls-key', 'is not the key of --tls-cert')
    expectOneLine(notCert, '--tls-cert', 'is not a PEM certificate')
    expectOneLine(half, 'ca.crt without ca.key')
    expectOneLine(badHost, '--auto-tls-hosts')
    expectOneLine(conflict, '--auto-tls cannot be combined')
    expect(existsSync(join(dir, 'new'))).toBe(false)
  })

  test('agent --join-file: the token is read from the file, reported by id only, and nothing is dialed', async () => {
    const token = createSpokeToken()
    const joinToken = encodeJoinToken({ server: `wss://127.0.0.1:${busyPort}/connect`, caSha256: tls.caSha256, token: token.token })
    const joinFile = join(dir, 'join-token')
    await writeFile(joinFile, `${joinToken}\n`)
    let dialed = 0
    busy.on('connection', (socket) => { dialed++; socket.destroy() })
    const result = await check(['agent', '--join-file', joinFile, '--upstream', 'prometheus=prometheus-server:9090',
      '--upstream', 'node=[fd00::1]:9100', '--label', 'cluster=orion-aws', '--health-listen', `127.0.0.1:${busyPort}`, '--restart-backoff-max', '2s'])
    expect(result.code, result.stderr.join('\n')).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({
      ok: true,
      command: 'agent',
      server: `wss://127.0.0.1:${busyPort}/connect`,
      credentials: { from: 'join-file', tokenId: token.id, caPinned: true, caSha256: tls.caSha256 },
      upstreams: ['prometheus=prometheus-server:9090', 'node=[fd00::1]:9100'],
      labels: { cluster: 'orion-aws' },
      healthListen: `127.0.0.1:${busyPort}`,
      settings: { 'restart-backoff-max': { value: 2000, source: 'flag' } },
    })
    expect(result.stdout).not.toContain(token.token)
    expect(result.stdout).not.toContain(joinToken)
    expect(dialed).toBe(0)

    const inline = await check(['agent', '--join', joinToken, '--upstream', 'prometheus=p:9090'])
    expect(inline.code).toBe(0)
    expect(inline.stdout).not.toContain(joinToken)
    expect(JSON.parse(inline.stdout)).toMatchObject({ settings: { join: { value: '[redacted]', source: 'flag' } }, credentials: { from: 'join' } })
  })

  test('agent: conflicting credentials, a missing file, a bad CA file, a bad token, plain ws:// or a 0 s restart backoff exit 2 with one line', async () => {
    const joinFile = join(dir, 'join-token-2')
    await writeFile(joinFile, encodeJoinToken({ server: 'wss://hub.example.com/connect', token: createSpokeToken().token }))
    const badToken = join(dir, 'bad-token')
    await writeFile(badToken, 'slk_nope\n')
    const [conflict, missing, badCa, malformed, insecure, noUpstream, zeroRestartBackoff] = await Promise.all([
      check(['agent', '--join-file', joinFile, '--token-file', badToken, '--upstream', 'prometheus=p:9090']),
      check(['agent', '--join-file', join(dir, 'nowhere'), '--upstream', 'prometheus=p:9090']),
      check(['agent', '--join-file', joinFile, '--ca-file', join(dir, 'tls.key'), '--upstream', 'prometheus=p:9090']),
      check(['agent', '--server', 'wss://hub.example.com/connect', '--token-file', badToken, '--upstream', 'prometheus=p:9090']),
      check(['agent', '--server', 'ws://hub.example.com/connect', '--token', createSpokeToken().token, '--upstream', 'prometheus=p:9090']),
      check(['agent', '--join-file', joinFile]),
      check(['agent', '--join-file', joinFile, '--upstream', 'prometheus=p:9090', '--restart-backoff-max', '0s']),
    ])
    expectOneLine(conflict, 'give one of --join, --join-file, --token or --token-file')
    expectOneLine(missing, '--join-file: cannot read')
    expectOneLine(badCa, '--ca-file', 'is not a PEM certificate')
    expectOneLine(malformed, 'spoke token is malformed')
    expectOneLine(insecure, 'refusing plain ws://')
    expectOneLine(noUpstream, '--upstream')
    expectOneLine(zeroRestartBackoff, 'backoff.plannedMaxDelayMs: expected a positive integer, got 0')
  })
})
