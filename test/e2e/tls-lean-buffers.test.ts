/**
 * `tlsLeanBuffers` (`spokelink server --tls-lean-buffers`): the exit-node starts TLS on a connection's first bytes
 * (README "Fleet"). A wss session carries every byte both ways; the option is checked when the exit-node is created.
 */
import net from 'node:net'
import { once } from 'node:events'
import { describe, expect, onTestFinished, test } from 'vitest'
import { Registry } from 'prom-client'
import pino from 'pino'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { createExitNode } from '@spokelink/exit-node'
import type { ExitNodeOptions } from '@spokelink/exit-node'
import { createTlsFixture, deterministicSource, expectedSha256, freePort, hashStream, spokesYaml } from '@spokelink/testkit'
import { echoUpstream, startAgent, startExitNode } from './in-process-tunnel.js'

const SPOKE = 'orion'
const logger = pino({ level: 'silent' })

describe('exit-node tlsLeanBuffers', () => {
  test('a wss session with TLS started on the first bytes echoes 8 MiB sha256-exact through the data plane', async () => {
    const fixture = await createTlsFixture()
    const token = createSpokeToken()
    const dataPort = await freePort()
    const spokes = parseSpokesConfig(spokesYaml([{ name: SPOKE, tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), 'test')
    const exitNode = await startExitNode(spokes, logger, { tlsLeanBuffers: true, tls: { certPem: fixture.certPem, keyPem: fixture.keyPem } })
    const echoPort = await echoUpstream()
    await startAgent({ server: `wss://127.0.0.1:${exitNode.port}/connect`, token: token.token, caPem: fixture.caPem, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: echoPort }] }, logger)

    const bytes = 8 * 1024 * 1024
    const client = net.connect({ host: '127.0.0.1', port: dataPort })
    onTestFinished(() => { client.destroy() })
    await once(client, 'connect')
    const echoed = hashStream(client)
    deterministicSource(bytes, 7).pipe(client)
    expect(await echoed).toEqual({ bytes, sha256: expectedSha256(bytes, 7) })
  })

  test('a tlsLeanBuffers that is not a boolean is refused with SLK_ERR_EXIT_INVALID_OPTION', () => {
    const spokes = parseSpokesConfig(spokesYaml([{ name: SPOKE, tokens: [createSpokeToken()], ports: [] }]), 'test')
    const options = { tlsLeanBuffers: 'yes' } as unknown as ExitNodeOptions
    expect(() => createExitNode(options, spokes, { logger, registry: new Registry() })).toThrow(expect.objectContaining({
      code: 'SLK_ERR_EXIT_INVALID_OPTION',
      message: 'exit-node option tlsLeanBuffers: expected true or false, got yes',
    }))
  })
})
