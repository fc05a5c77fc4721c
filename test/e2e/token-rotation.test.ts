/**
 * Issue 10 part 3, "rotation without restarts": `spokelink token rotate` (the real CLI) adds a token and gives the
 * spoke's old ones an end; an in-process exit-node whose expiry check reads an injected clock keeps the old token's
 * session through the overlap and cuts it at the end, and the agent, handed the new token meanwhile, comes back with it.
 */
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, onTestFinished, test } from 'vitest'
import { Registry } from 'prom-client'
import { certificateSha256, createSpokeToken, decodeJoinToken, loadSpokesFile, parseSpokesConfig } from '@spokelink/auth'
import { createExitNode } from '@spokelink/exit-node'
import { createLogCapture, createTlsFixture, freePort, killAllProcesses, runSpokelink, spokesYaml, waitFor } from '@spokelink/testkit'
import { echoUpstream, nextDisconnect, startAgent } from './in-process-tunnel.js'

const HOUR = 3_600_000

interface RotateOutput { token: string, joinToken: string, id: string, spoke: string, oldTokens: string[], oldTokensExpire: string }

async function rotate (args: string[]): Promise<RotateOutput> {
  const proc = runSpokelink(['token', 'rotate', ...args, '--output', 'json'], { env: { SPOKELINK_SPOKES: undefined } })
  const exit = await proc.waitForExit({ timeoutMs: 60_000 })
  expect(exit, proc.tail()).toEqual({ code: 0, signal: null })
  return JSON.parse(proc.stdoutLines.filter((l) => l !== '').join('')) as RotateOutput
}

describe('token rotation with overlap', () => {
  afterAll(async () => { await killAllProcesses() })

  test('token rotate: the old token works through the overlap, then its session is cut; the agent comes back with the new one', async () => {
    const logs = createLogCapture()
    const dir = await mkdtemp(join(tmpdir(), 'slk-rotate-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const path = join(dir, 'spokes.yaml')
    const old = createSpokeToken()
    const dataPort = await freePort()
    await writeFile(path, spokesYaml([{ name: 'orion', tokens: [old], ports: [{ upstream: 'prometheus', port: dataPort }] }]))

    // The exit-node's notion of "now": real time at the start, moved only by the test.
    let nowMs = Date.now()
    const exitNode = createExitNode({ host: '127.0.0.1', port: 0, adminPort: 0, shutdownGraceMs: 500 }, await loadSpokesFile(path), {
      logger: logs.logger('exit-node'),
      registry: new Registry(),
      clock: () => new Date(nowMs),
    })
    onTestFinished(async () => { await exitNode.close() })
    const { port } = await exitNode.listen()
    const url = `ws://127.0.0.1:${port}/connect`
    const agent = await startAgent({ server: url, token: old.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: await echoUpstream() }] }, logs.logger('agent'))

    const tls = await createTlsFixture()
    const caFile = join(dir, 'ca.crt')
    await writeFile(caFile, tls.caPem)
    const before = Date.now()
    const rotated = await rotate(['--spokes', path, '--spoke', 'orion', '--overlap', '24h', '--server', 'wss://hub.example.com/connect', '--ca-file', caFile])
    const after = Date.now()
    expect(rotated.spoke).toBe('orion')
    expect(rotated.oldTokens).toEqual([old.id])
    expect(decodeJoinToken(rotated.joinToken)).toEqual({ server: 'wss://hub.example.com/connect', token: rotated.token, caSha256: certificateSha256(tls.caPem) })
    const end = Date.parse(rotated.oldTokensExpire)
    expect(end).toBeGreaterThanOrEqual(before + 24 * HOUR - 1000) // the file stores whole seconds
    expect(end).toBeLessThanOrEqual(after + 24 * HOUR)
    const tokens = parseSpokesConfig(await readFile(path, 'utf8'), path).spokes[0]?.tokens ?? []
    expect(tokens.map((t) => [t.id, t.expires?.toISOString()])).toEqual([[old.id, rotated.oldTokensExpire], [rotated.id, undefined]])

    // The exit-node reloads the file: nothing changes for the live session during the overlap.
    exitNode.updateSpokes(await loadSpokesFile(path))
    agent.setToken(rotated.token) // what the token-file watch does when the Secret is updated
    const expiry = Date.parse(tokens[0]?.expires?.toISOString() ?? '')
    nowMs = expiry - 1
    exitNode.updateSpokes(await loadSpokesFile(path)) // revalidates now, at the last millisecond of the overlap
    expect(exitNode.sessions.sessionsOf('orion').map((s) => s.tokenId)).toEqual([old.id])

    // The overlap ends: the next revalidation tick cuts the session, and the agent reconnects with the new token.
    const cut = nextDisconnect(agent, 5000)
    const reconnected = once(agent, 'connected', { signal: AbortSignal.timeout(10_000) })
    nowMs = expiry
    expect(await cut).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('token expired') })
    await reconnected
    expect(exitNode.sessions.sessionsOf('orion').map((s) => s.tokenId)).toEqual([rotated.id])
    expect(logs.entries().filter((e) => e.msg === 'session revoked').map((e) => [e.tokenId, e.reason])).toEqual([[old.id, 'token expired']])

    // The old token is now refused at the upgrade (403), the new one keeps working.
    const stale = await startAgent({ server: url, token: old.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: 9 }] }, logs.logger('stale-agent'), false)
    expect(await nextDisconnect(stale, 10_000)).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('token expired') })
    await waitFor(() => exitNode.sessions.sessionsOf('orion').length === 1, { what: 'the rotated session to stay alone' })
  })
})
