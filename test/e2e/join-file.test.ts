import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createSpokeToken, encodeJoinToken } from '@spokelink/auth'
import { freePort, killAllProcesses, runSpokelink, spokesYaml, startFixtureExporter } from '@spokelink/testkit'
import type { FixtureExporter, LogEntry } from '@spokelink/testkit'

// `spokelink agent --join-file`: the agent chart mounts the join token from a Secret as a file, so it never shows
// in an env var or `kubectl describe`. The file is read at start and its token again on SIGHUP.

const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)
const isMsg = (msg: string) => (e: LogEntry): boolean => e.msg === msg

describe('agent --join-file (child processes)', () => {
  let dir: string
  let exporter: FixtureExporter

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slk-join-'))
    exporter = await startFixtureExporter()
  })

  afterAll(async () => {
    await killAllProcesses()
    await exporter?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('connects with the join token in the file, and takes a rotated one on SIGHUP', async () => {
    const good = createSpokeToken()
    const spokes = join(dir, 'spokes.yaml')
    await writeFile(spokes, spokesYaml([{ name: 'orion-aws', tokens: [good], ports: [{ upstream: 'prometheus', port: await freePort() }] }]))
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokes], { env: CLEAN_ENV })
    const port = Number((await server.waitForLog(isMsg('listening'), { what: 'the server\'s listening line', timeoutMs: 30_000 })).port)
    const joinFor = (token: string): string => encodeJoinToken({ server: `ws://127.0.0.1:${port}/connect`, token })
    const joinFile = join(dir, 'join-token')
    const stale = createSpokeToken().token // not in the spokes file: 401
    await writeFile(joinFile, `${joinFor(stale)}\n`)
    const agent = runSpokelink(['agent', '--join-file', joinFile, '--upstream', `prometheus=${exporter.target}`], { env: CLEAN_ENV })
    expect(await agent.waitForLog(isMsg('disconnected'), { what: 'the agent to be refused', timeoutMs: 30_000 })).toMatchObject({ code: 'SLK_ERR_AGENT_UNAUTHORIZED' })

    await writeFile(joinFile, `${joinFor(good.token)}\n`)
    agent.child.kill('SIGHUP')
    expect(await agent.waitForLog((e) => e.msg === 'reload done' && e.tokenFile === 'reloaded', { what: 'the agent\'s reload', timeoutMs: 30_000 })).toBeDefined()
    expect(await agent.waitForLog(isMsg('connected'), { what: 'the agent to connect with the new token', timeoutMs: 30_000 })).toMatchObject({ spoke: 'orion-aws' })
    for (const secret of [good.token, stale]) expect(agent.output()).not.toContain(secret.split('_').slice(2).join('_'))

    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })
})
