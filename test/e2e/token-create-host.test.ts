import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ensureAutoTls } from '@spokelink/auth'
import { runSpokelink } from '@spokelink/testkit'

// `token create --server URL --ca-file <auto-tls dir>/ca.crt` warns when the exit-node's certificate beside that CA
// does not name the URL's host: the join token would pin the right CA, and every agent would still be refused
// (SLK_ERR_AGENT_TLS_PIN) until the exit-node's --auto-tls-hosts lists the host.

const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

describe('token create --server checks the host against the auto-tls certificate', () => {
  let dir: string
  let spokes: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slk-token-host-'))
    await ensureAutoTls(join(dir, 'hub-tls'), { hosts: ['hub.example.com'] })
    spokes = join(dir, 'spokes.yaml')
    await writeFile(spokes, 'spokes:\n  - name: orion-aws\n    tokens: []\n    ports: [{upstream: prometheus, listen: "0.0.0.0:19090"}]\n')
  }, 60_000)

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function create (server: string): Promise<{ code: number | null, stdout: readonly string[], stderr: string[] }> {
    const proc = runSpokelink(['token', 'create', '--spokes', spokes, '--spoke', 'orion-aws', '--server', server, '--ca-file', join(dir, 'hub-tls', 'ca.crt')], { env: CLEAN_ENV })
    const exit = await proc.waitForExit({ timeoutMs: 30_000 })
    return { code: exit.code, stdout: proc.stdoutLines, stderr: proc.stderrLines.filter((line) => line !== '') }
  }

  test('a host the certificate does not name: one warning line on stderr, the token is still made', async () => {
    const result = await create('wss://127.0.0.1:8123/connect')
    expect(result.code).toBe(0)
    expect(result.stderr).toEqual([
      `warning: --server host 127.0.0.1 is not in the exit-node certificate ${join(dir, 'hub-tls', 'tls.crt')} (DNS:hub.example.com); agents will refuse it (SLK_ERR_AGENT_TLS_PIN): add 127.0.0.1 to the exit-node's --auto-tls-hosts and restart it, or use a --server URL with a name it has`,
    ])
    expect(result.stdout.some((line) => line.startsWith('join token: slkj1.'))).toBe(true)
  })

  test('a host it names: no warning', async () => {
    const result = await create('wss://hub.example.com:8123/connect')
    expect(result.code).toBe(0)
    expect(result.stderr).toEqual([])
  })
})
