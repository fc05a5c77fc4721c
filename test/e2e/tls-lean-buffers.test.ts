/**
 * `tlsLeanBuffers` (`spokelink server --tls-lean-buffers`): the exit-node starts TLS on a connection's first bytes
 * (README "Fleet"). A wss session carries every byte both ways; the option is checked when the exit-node is created.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { describe, expect, onTestFinished, test } from 'vitest'
import { Registry } from 'prom-client'
import pino from 'pino'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { createExitNode } from '@spokelink/exit-node'
import type { ExitNodeOptions } from '@spokelink/exit-node'
import { createLogCapture, createTlsFixture, deterministicSource, expectedSha256, freePort, hashStream, runSpokelink, spokesYaml, waitFor, writeTlsFixtureFiles } from '@spokelink/testkit'
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

  test('the option reaches the TLS server: a connection that sends nothing is closed by the wait for its first bytes', async () => {
    const fixture = await createTlsFixture()
    const spokes = parseSpokesConfig(spokesYaml([{ name: SPOKE, tokens: [createSpokeToken()], ports: [] }]), 'test')
    const capture = createLogCapture()
    const exitNode = await startExitNode(spokes, capture.logger('exit-node'), { tlsLeanBuffers: true, tlsHandshakeTimeoutMs: 200, tls: { certPem: fixture.certPem, keyPem: fixture.keyPem } })
    const silent = net.connect({ host: '127.0.0.1', port: exitNode.port })
    onTestFinished(() => { silent.destroy() })
    silent.on('error', () => { /* closed by the exit-node */ })
    await once(silent, 'close')
    // Node's own handshake timer says 'TLS handshake timeout'; the wait before TLS starts names the ClientHello.
    await waitFor(() => capture.entries().some((e) => e.msg === 'tls handshake failed'), { what: 'the handshake failure logged' })
    expect(capture.entries().filter((e) => e.msg === 'tls handshake failed').map((e) => e.err)).toEqual([
      expect.objectContaining({ code: 'ERR_TLS_HANDSHAKE_TIMEOUT', message: 'TLS handshake timeout: no ClientHello' }),
    ])
  })

  test('spokelink server --tls-lean-buffers: the CLI passes it on (the same silent connection, in the debug log)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spokelink-lean-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const files = await writeTlsFixtureFiles(dir)
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, spokesYaml([{ name: SPOKE, tokens: [createSpokeToken()], ports: [] }]))
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile,
      '--tls-cert', files.certFile, '--tls-key', files.keyFile, '--tls-lean-buffers', '--tls-handshake-timeout', '200ms', '--log-level', 'debug'],
    { env: { SPOKELINK_TLS_LEAN_BUFFERS: undefined } })
    onTestFinished(async () => { await server.kill() })
    const port = Number((await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'the control port listening', timeoutMs: 30_000 })).port)
    const silent = net.connect({ host: '127.0.0.1', port })
    onTestFinished(() => { silent.destroy() })
    silent.on('error', () => { /* closed by the exit-node */ })
    await once(silent, 'close')
    const failed = await server.waitForLog((e) => e.msg === 'tls handshake failed', { what: 'the handshake failure logged', timeoutMs: 30_000 })
    expect(failed.err).toMatchObject({ code: 'ERR_TLS_HANDSHAKE_TIMEOUT', message: 'TLS handshake timeout: no ClientHello' })
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
