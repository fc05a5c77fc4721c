import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { hashTokenSecret, parseSpokeToken } from '@spokelink/auth'
import {
  exampleLinePattern,
  extractReadmeFlow,
  freePort,
  killAllProcesses,
  runProcess,
  splitExpectedOutput,
  startFixtureExporter,
} from '@spokelink/testkit'
import type { FixtureExporter, ReadmeFlowBlock, RunningProcess } from '@spokelink/testkit'

// The README's "Use it" walk-through, run as a reader runs it: the blocks marked `<!-- readme-flow:… -->` are taken
// from README.md itself and run with bash in a temp directory. Only what cannot be the same here is substituted: the
// ports (free ports on 127.0.0.1), `0.0.0.0` binds (127.0.0.1), the CLI's path (the repository's
// ./node_modules/.bin/spokelink, absolute since the commands run elsewhere) and the join token a reader copies from
// one command's output into the next. An edit of the README that breaks the flow fails this test.

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const README = join(REPO, 'README.md')
const BIN = join(REPO, 'node_modules/.bin/spokelink')
/** The example token id the README's sample output shows; in a real run it is any generated id. */
const EXAMPLE_TOKEN_ID = '3kq7v2mx'
const JOIN_PLACEHOLDER = "'slkj1.…'"
const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)
/** The stand-in for the spoke's Prometheus: what `/federate?match[]=up` of a real one answers. */
const SAMPLE_FEDERATE = [
  '# TYPE up untyped',
  'up{cluster="orion-aws",instance="node-exporter:9100",job="node"} 1 1700000000000',
  '',
].join('\n')

interface Substitutions {
  ports: Map<number, number>
  joinToken?: string
}

/** Every `:NNNN` port the flow names gets one free port on 127.0.0.1 for the whole run. */
async function allocatePorts (blocks: readonly ReadmeFlowBlock[]): Promise<Map<number, number>> {
  const ports = new Map<number, number>()
  for (const block of blocks) {
    for (const match of block.body.matchAll(/:(\d{4,5})\b/g)) {
      const port = Number(match[1])
      if (!ports.has(port)) ports.set(port, await freePort())
    }
  }
  return ports
}

function substitute (text: string, subs: Substitutions): string {
  let out = text.replaceAll('./node_modules/.bin/spokelink', BIN).replaceAll('0.0.0.0:', '127.0.0.1:')
  out = out.replace(/:(\d{4,5})\b/g, (whole, port: string) => {
    const mapped = subs.ports.get(Number(port))
    return mapped === undefined ? whole : `:${mapped}`
  })
  if (out.includes(JOIN_PLACEHOLDER)) {
    if (subs.joinToken === undefined) throw new Error(`a block uses ${JOIN_PLACEHOLDER} before any command printed a join token`)
    out = out.replaceAll(JOIN_PLACEHOLDER, `'${subs.joinToken}'`)
  }
  return out
}

/** Asserts each expected line matches a stdout line, in order (other lines may come between). */
function expectOutput (stdout: readonly string[], expected: readonly string[], block: ReadmeFlowBlock): void {
  let from = 0
  for (const example of expected) {
    const pattern = exampleLinePattern(example, { [EXAMPLE_TOKEN_ID]: '[a-z2-7]{8}', '2027-02-19': '\\d{4}-\\d{2}-\\d{2}' })
    const at = stdout.findIndex((line, i) => i >= from && pattern.test(line))
    expect(at, `README line ${block.line}: no output line like ${JSON.stringify(example)} in:\n${stdout.join('\n')}`).toBeGreaterThanOrEqual(0)
    from = at + 1
  }
}

describe('README walk-through, run as written', () => {
  let dir: string
  let upstream: FixtureExporter
  let blocks: ReadmeFlowBlock[]

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slk-readme-'))
    upstream = await startFixtureExporter({ metrics: SAMPLE_FEDERATE, paths: ['/federate', '/metrics'] })
    blocks = extractReadmeFlow(await readFile(README, 'utf8'))
  })

  afterAll(async () => {
    await killAllProcesses()
    await upstream?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('spokes file, exit-node, token, agent, a federated scrape and /v1/sd', async () => {
    expect(existsSync(BIN), `${BIN} (run npx -y pnpm@10 install first)`).toBe(true)
    expect(blocks.map((block) => `${block.kind} ${block.arg ?? ''}`.trim())).toEqual(expect.arrayContaining(['file spokes.yaml', 'background server', 'background agent', 'run output']))
    const subs: Substitutions = { ports: await allocatePorts(blocks) }
    // The spoke's Prometheus, which the README assumes on 127.0.0.1:9090.
    subs.ports.set(9090, upstream.port)
    const background = new Map<string, RunningProcess>()
    const outputs: string[][] = []

    for (const block of blocks) {
      const body = substitute(block.body, subs)
      if (block.kind === 'file') {
        await writeFile(join(dir, block.arg ?? 'unnamed'), body)
      } else if (block.kind === 'background') {
        const proc = runProcess('bash', ['-c', body], { cwd: dir, env: CLEAN_ENV, name: `README line ${block.line} (${block.arg ?? ''})` })
        background.set(block.arg ?? '', proc)
        if (block.arg === 'server') {
          const admin = await proc.waitForLog((e) => e.msg === 'listening' && e.listener === 'admin', { timeoutMs: 30_000, what: `the server of README line ${block.line} listening` })
          const control = await proc.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'the control listener' })
          expect(control.port).toBe(subs.ports.get(8123))
          expect(admin.port).toBe(subs.ports.get(9464))
        } else if (block.arg === 'agent') {
          const connected = await proc.waitForLog((e) => e.msg === 'connected', { timeoutMs: 30_000, what: `the agent of README line ${block.line} connected` })
          expect(connected.spoke).toBe('orion-aws')
        }
      } else {
        const { commands, expected } = block.arg === 'output' ? splitExpectedOutput(body) : { commands: body, expected: [] }
        const proc = runProcess('bash', ['-euo', 'pipefail', '-c', commands], { cwd: dir, env: CLEAN_ENV, name: `README line ${block.line}` })
        const exit = await proc.waitForExit({ timeoutMs: 30_000 })
        expect(exit.code, `README line ${block.line}:\n${proc.tail(20)}`).toBe(0)
        // A step a reader follows must not warn (token create warns when the certificate does not name --server's host).
        expect(proc.stderrLines.filter((line) => line.startsWith('warning:')), `README line ${block.line}`).toEqual([])
        expectOutput(proc.stdoutLines, expected, block)
        outputs.push([...proc.stdoutLines])
        const join = proc.stdoutLines.map((line) => /^join token: (slkj1\.\S+)$/.exec(line)?.[1]).find((token) => token !== undefined)
        if (join !== undefined) subs.joinToken = join
      }
    }

    // token create: the printed token is in the spokes file, by its id and the sha256 of its secret.
    const printedToken = outputs.flat().map((line) => /^token: (slk_\S+)$/.exec(line)?.[1]).find((token) => token !== undefined)
    expect(printedToken).toBeDefined()
    const { id, secret } = parseSpokeToken(printedToken ?? '')
    const spokes = parseYaml(await readFile(join(dir, 'spokes.yaml'), 'utf8')) as { spokes: Array<{ name: string, tokens: Array<{ id: string, sha256: string }> }> }
    expect(spokes.spokes.find((spoke) => spoke.name === 'orion-aws')?.tokens).toEqual([expect.objectContaining({ id, sha256: hashTokenSecret(secret) })])
    expect(subs.joinToken).toMatch(/^slkj1\./)

    // The federated scrape went through the tunnel to the stand-in Prometheus and came back whole.
    expect(upstream.requests).toBeGreaterThan(0)
    expect(outputs.flat()).toContain('up{cluster="orion-aws",instance="node-exporter:9100",job="node"} 1 1700000000000')

    // /v1/sd on the admin port lists the spoke, connected, at its data-plane port.
    const sdLine = outputs.flat().find((line) => line.startsWith('[{'))
    const groups = JSON.parse(sdLine ?? '[]') as Array<{ targets: string[], labels: Record<string, string> }>
    expect(groups.find((group) => group.labels.__meta_spokelink_spoke === 'orion-aws')).toMatchObject({
      targets: [`127.0.0.1:${subs.ports.get(19090) ?? 0}`],
      labels: { __meta_spokelink_connected: 'true', __meta_spokelink_upstream: 'prometheus', __meta_spokelink_label_cluster: 'orion-aws' },
    })

    // Nothing the flow printed carries the token secret, and the agent still holds its session.
    for (const proc of background.values()) expect(proc.output()).not.toContain(secret)
    expect(background.get('agent')?.exit).toBeUndefined()
  }, 120_000)

  test('token create --output json prints exactly the keys the README names', async () => {
    const readme = await readFile(README, 'utf8')
    const documented = /`--output json` prints\s+one object `\{([^`}]+)\}`/.exec(readme)?.[1]
    expect(documented, 'the README sentence naming the --output json keys').toBeDefined()
    const keys = (documented ?? '').split(',').map((key) => key.trim().replace(/^"(.*)"$/, '$1'))
    const spokes = join(dir, 'json-keys.yaml')
    await writeFile(spokes, 'spokes:\n  - name: orion-aws\n    tokens: []\n    ports: [{upstream: prometheus, listen: "127.0.0.1:19090"}]\n')
    const proc = runProcess(BIN, ['token', 'create', '--spokes', spokes, '--spoke', 'orion-aws', '--expires', '90d', '--server', 'wss://127.0.0.1:8123/connect', '--output', 'json'], { env: CLEAN_ENV })
    expect((await proc.waitForExit({ timeoutMs: 30_000 })).code, proc.tail()).toBe(0)
    expect(Object.keys(JSON.parse(proc.stdoutLines.join('')) as object).sort()).toEqual([...keys].sort())
  })
})
