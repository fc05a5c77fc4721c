/**
 * Issue 7 items 2 and 3: a live session ends once its credential stops being valid, whatever changed (the hash under
 * the same id, a revocation), and even when the spokes file could not be read at the moment of the change.
 * In-process exit-node and agent on real sockets; the spokes file is a real file edited with editSpokesFile.
 */
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, onTestFinished, test } from 'vitest'
import type { Logger } from 'pino'
import type { Agent } from '@spokelink/agent'
import { createSpokeToken, editSpokesFile, loadSpokesFile, parseSpokesConfig, revokeSpokeToken, watchSpokesFile } from '@spokelink/auth'
import type { CreatedSpokeToken } from '@spokelink/auth'
import { createLogCapture, freePort, spokesYaml, waitFor } from '@spokelink/testkit'
import type { SpokesYamlToken } from '@spokelink/testkit'
import { echoUpstream, nextDisconnect, startAgent, startExitNode } from './in-process-tunnel.js'

/** A spokes file of one spoke, orion, with `tokens` and its prometheus port. */
function spokesText (dataPort: number, tokens: SpokesYamlToken[]): string {
  return spokesYaml([{ name: 'orion', tokens, ports: [{ upstream: 'prometheus', port: dataPort }] }])
}

async function connectedAgent (token: CreatedSpokeToken, url: string, logger: Logger): Promise<Agent> {
  return startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: await echoUpstream() }] }, logger)
}

describe('session revalidation', () => {
  test('a new hash under the same token id cuts the live session, and the old secret is then refused', async () => {
    const logs = createLogCapture()
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(parseSpokesConfig(spokesText(dataPort, [token]), 'test'), logs.logger('exit-node'))
    const agent = await connectedAgent(token, url, logs.logger('agent'))
    expect(exitNode.sessions.sessionsOf('orion')).toHaveLength(1)

    const cut = nextDisconnect(agent, 5000)
    exitNode.updateSpokes(parseSpokesConfig(spokesText(dataPort, [{ id: token.id, sha256: createSpokeToken().sha256 }]), 'test'))
    expect(await cut).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('token hash changed') })
    expect(exitNode.sessions.all()).toEqual([])
    expect(logs.entries().filter((e) => e.msg === 'session revoked').map((e) => [e.tokenId, e.reason])).toEqual([[token.id, 'token hash changed']])
    // Reconnecting with the old secret: 401 before the upgrade.
    expect(await nextDisconnect(agent, 10_000)).toMatchObject({ code: 'SLK_ERR_AGENT_UNAUTHORIZED' })
  })

  test('revoked while the spokes file cannot be read (EMFILE): the session is cut within 5 s of reads recovering', async () => {
    const logs = createLogCapture()
    const dir = await mkdtemp(join(tmpdir(), 'slk-revalidate-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const path = join(dir, 'spokes.yaml')
    const token = createSpokeToken()
    await writeFile(path, spokesText(await freePort(), [token]))
    const { exitNode, url } = await startExitNode(await loadSpokesFile(path), logs.logger('exit-node'))

    let failing = false
    let failedReads = 0
    const watcher = watchSpokesFile(path, {
      initial: await loadSpokesFile(path),
      onChange: (next) => { exitNode.updateSpokes(next) },
      onError: () => {},
      // Production defaults for the retry (100 ms doubling to 2 s) and the 30 s re-read.
      readFile: async (file) => {
        if (failing) {
          failedReads++
          throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })
        }
        return readFile(file, 'utf8')
      },
    })
    onTestFinished(() => { watcher.close() })
    const agent = await connectedAgent(token, url, logs.logger('agent'))

    failing = true
    await editSpokesFile(path, (text) => revokeSpokeToken(text, token.id))
    await waitFor(() => failedReads >= 3, { what: 'three failed reads of the revoked file' })
    expect(exitNode.sessions.sessionsOf('orion')).toHaveLength(1) // still serving: the revocation is not read yet

    const cut = nextDisconnect(agent, 5000)
    failing = false
    expect(await cut).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('token revoked') })
    expect(exitNode.sessions.all()).toEqual([])
  })
  test('a ports edit is a routine reconnect: close 1012, info on both sides, and the agent comes back on the new port', async () => {
    const logs = createLogCapture()
    const token = createSpokeToken()
    const [oldPort, newPort] = [await freePort(), await freePort()]
    const { exitNode, url } = await startExitNode(parseSpokesConfig(spokesText(oldPort, [token]), 'test'), logs.logger('exit-node'))
    const agent = await connectedAgent(token, url, logs.logger('agent'))

    const cut = nextDisconnect(agent, 5000)
    const back = once(agent, 'connected', { signal: AbortSignal.timeout(15_000) }) as Promise<[{ spoke: string, ports: Array<{ upstream: string, port: number }> }]>
    exitNode.updateSpokes(parseSpokesConfig(spokesText(newPort, [token]), 'test'))
    expect(await cut).toMatchObject({ code: 'SLK_ERR_AGENT_RECONFIGURED', message: expect.stringContaining('1012 spoke ports changed') })
    const [welcome] = await back
    expect(welcome.ports).toMatchObject([{ upstream: 'prometheus', port: newPort }])
    expect(logs.entries().filter((e) => e.msg === 'session reconfigured').map((e) => [e.name, e.level, e.code, e.reason])).toEqual([
      ['exit-node', 30, undefined, 'spoke ports changed'],
      ['agent', 30, 'SLK_ERR_AGENT_RECONFIGURED', 'exit-node asked for a reconnect (websocket close 1012 spoke ports changed)'],
    ])
    // Nothing reads as a refusal or an attack: no revocation, no warn from either side.
    expect(logs.entries().filter((e) => e.msg === 'session revoked' || (typeof e.level === 'number' && e.level >= 40))).toEqual([])
  })
})
