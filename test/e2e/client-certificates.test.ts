/**
 * Issue 10 part 2, client certificates end to end: an auto-TLS exit-node (in process, real sockets, real spokes file
 * edited under its lock) and agents given only a join token and a state directory. The certificate is issued over
 * the bootstrap session, the agent reconnects with it, a second bootstrap and a copied token without the key are
 * refused with 403 and the reason, renewal runs over the live session on an injected clock, and revoking the serial
 * cuts the session.
 */
import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, onTestFinished, test } from 'vitest'
import { Registry } from 'prom-client'
import { ClientIdentity, STATE_DIR_FILES, createAgent } from '@spokelink/agent'
import type { Agent, AgentOptions } from '@spokelink/agent'
import {
  AUTO_TLS_FILES,
  CLIENT_CERT_DEFAULTS,
  createCertificateAuthority,
  createCertificateRequest,
  createClientKey,
  createSpokeToken,
  decodeJoinToken,
  editSpokesFile,
  encodeJoinToken,
  ensureAutoTls,
  loadSpokesFile,
  parseSpokesConfig,
  revokeCertificateSerial,
  signClientCertificate,
} from '@spokelink/auth'
import { ClientCertificateAuthority, createExitNode } from '@spokelink/exit-node'
import { createLogCapture, freePort, killAllProcesses, runSpokelink, spokesYaml, waitFor } from '@spokelink/testkit'
import type { LogEntry, RunningProcess } from '@spokelink/testkit'
import { FAST_BACKOFF, echoUpstream } from './in-process-tunnel.js'

const DAY = 86_400_000

async function nextEvent (agent: Agent, event: 'connected' | 'disconnected', timeoutMs = 10_000): Promise<unknown> {
  const [value] = await once(agent, event, { signal: AbortSignal.timeout(timeoutMs) }) as [unknown]
  return value
}

describe('client certificates (requireClientCert) end to end', () => {
  test('issued over the bootstrap session, reconnect with it, second bootstrap and copied token refused, renewal on an injected clock, serial revocation cuts the session', async () => {
    const logs = createLogCapture()
    const dir = await mkdtemp(join(tmpdir(), 'slk-mtls-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const tlsDir = join(dir, 'auto-tls')
    const material = await ensureAutoTls(tlsDir, { hosts: ['127.0.0.1'] })
    const token = createSpokeToken()
    const spokesPath = join(dir, 'spokes.yaml')
    await writeFile(spokesPath, spokesYaml([{ name: 'orion', requireClientCert: true, tokens: [token], ports: [{ upstream: 'prometheus', port: await freePort() }] }]))

    // One injected "now" for the exit-node's checks and the agents' renewal decisions: real time plus an offset.
    let offsetMs = 0
    const nowMs = (): number => Date.now() + offsetMs
    const exitNode = createExitNode({
      host: '127.0.0.1',
      port: 0,
      adminPort: 0,
      shutdownGraceMs: 500,
      tls: { certPem: `${material.certPem.trimEnd()}\n${material.caPem.trimEnd()}\n`, keyPem: material.keyPem },
    }, await loadSpokesFile(spokesPath), {
      logger: logs.logger('exit-node'),
      registry: new Registry(),
      clock: () => new Date(nowMs()),
      clientCertificates: new ClientCertificateAuthority({
        caCertPem: await readFile(join(tlsDir, AUTO_TLS_FILES.caCert), 'utf8'),
        caKeyPem: await readFile(join(tlsDir, AUTO_TLS_FILES.caKey), 'utf8'),
        spokesPath,
      }),
    })
    onTestFinished(async () => { await exitNode.close() })
    const { port } = await exitNode.listen()
    // The customer gets one string.
    const join1 = decodeJoinToken(encodeJoinToken({ server: `wss://127.0.0.1:${port}/connect`, token: token.token, caSha256: material.caSha256 }))
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: await echoUpstream() }]

    const startAgent = async (name: string, stateDir: string, extra: Partial<AgentOptions> = {}): Promise<Agent> => {
      const agent = createAgent({
        server: join1.server,
        token: join1.token,
        caSha256: join1.caSha256,
        upstreams,
        agentName: name,
        backoff: FAST_BACKOFF,
        clientIdentity: await ClientIdentity.open(stateDir),
        ...extra,
      }, { logger: logs.logger(name), registry: new Registry(), now: nowMs })
      onTestFinished(async () => { await agent.close({ graceMs: 0 }) })
      return agent
    }
    const serialInFile = async (): Promise<string | undefined> => parseSpokesConfig(await readFile(spokesPath, 'utf8'), spokesPath).spokes[0]?.tokens[0]?.certSerial
    const certInStateDir = async (stateDir: string): Promise<X509Certificate> => new X509Certificate(await readFile(join(stateDir, STATE_DIR_FILES.cert)))

    // 1. Bootstrap: the join token alone connects once; the agent sends a CSR and stores the certificate.
    const stateDir = join(dir, 'state')
    const first = await startAgent('agent-1', stateDir)
    const firstConnected = nextEvent(first, 'connected')
    first.start()
    await firstConnected
    await waitFor(async () => (await serialInFile()) !== undefined, { what: 'the issued serial in the spokes file' })
    await waitFor(() => logs.entries().some((e) => e.msg === 'client certificate stored; the next connection presents it'), { what: 'the agent to store the certificate' })
    const issued = await certInStateDir(stateDir)
    const serial = await serialInFile()
    expect(issued.serialNumber.toLowerCase()).toBe(serial)
    expect(issued.subject).toBe(`CN=orion\nOU=${token.id}`)
    expect(issued.checkIssued(new X509Certificate(material.caPem))).toBe(true)
    expect(new Date(issued.validTo).getTime() - nowMs()).toBeGreaterThan(CLIENT_CERT_DEFAULTS.lifetimeMs - 60_000)
    // The key was made in the state dir, is private, and matches the certificate.
    for (const file of [STATE_DIR_FILES.key, STATE_DIR_FILES.cert]) expect((await stat(join(stateDir, file))).mode & 0o777).toBe(0o600)
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700)
    expect(issued.checkPrivateKey((await import('node:crypto')).createPrivateKey(await readFile(join(stateDir, STATE_DIR_FILES.key), 'utf8')))).toBe(true)
    await first.close({ graceMs: 0 })

    // 2. Reconnect with it: the session is bound to the certificate's serial.
    const second = await startAgent('agent-2', stateDir)
    const secondConnected = nextEvent(second, 'connected')
    second.start()
    await secondConnected
    expect(exitNode.sessions.sessionsOf('orion').map((s) => s.certSerial)).toEqual([serial])

    // 3. A second bootstrap with the same token (a fresh state dir: no certificate) is refused with the reason.
    const again = await startAgent('agent-again', join(dir, 'state-again'))
    const refused = nextEvent(again, 'disconnected')
    again.start()
    expect(await refused).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('client certificate required: this token already bootstrapped one') })
    await again.close({ graceMs: 0 })

    // 4. A copied token with a certificate of the attacker's own making (same subject, another CA): refused.
    const rogueCa = await createCertificateAuthority({ commonName: 'rogue' })
    const rogueKey = createClientKey()
    const rogue = signClientCertificate(rogueCa, createCertificateRequest(rogueKey, { spoke: 'orion', tokenId: token.id }), { spoke: 'orion', tokenId: token.id, now: new Date(nowMs()), lifetimeMs: DAY })
    const rogueDir = join(dir, 'state-rogue')
    await ClientIdentity.open(rogueDir)
    await writeFile(join(rogueDir, STATE_DIR_FILES.key), rogueKey)
    await writeFile(join(rogueDir, STATE_DIR_FILES.cert), rogue.certPem)
    const copied = await startAgent('agent-copied', rogueDir)
    const copiedRefused = nextEvent(copied, 'disconnected')
    copied.start()
    expect(await copiedRefused).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('not issued by this exit-node\'s CA') })
    await copied.close({ graceMs: 0 })
    expect(exitNode.sessions.sessionsOf('orion')).toHaveLength(1)

    // 5. Renewal: a day before expiry (inside the 2-day margin) the live session asks again and keeps running.
    expect(await second.checkClientCertificate()).toBe('current')
    offsetMs = new Date(issued.validTo).getTime() - Date.now() - DAY
    expect(await second.checkClientCertificate()).toBe('renewed')
    const renewed = await certInStateDir(stateDir)
    expect(renewed.serialNumber.toLowerCase()).not.toBe(serial)
    expect(await serialInFile()).toBe(renewed.serialNumber.toLowerCase())
    expect(new Date(renewed.validTo).getTime()).toBeGreaterThan(new Date(issued.validTo).getTime())
    expect(exitNode.sessions.sessionsOf('orion').map((s) => s.agent)).toEqual(['agent-2'])
    // The certificate it replaced (a stale copy of the state dir) no longer opens a session.
    const staleDir = join(dir, 'state-stale')
    await ClientIdentity.open(staleDir)
    await writeFile(join(staleDir, STATE_DIR_FILES.key), await readFile(join(stateDir, STATE_DIR_FILES.key)))
    await writeFile(join(staleDir, STATE_DIR_FILES.cert), issued.toString())
    const stale = await startAgent('agent-stale', staleDir)
    const staleRefused = nextEvent(stale, 'disconnected')
    stale.start()
    expect(await staleRefused).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('client certificate was renewed or replaced') })
    await stale.close({ graceMs: 0 })

    // 6. Revoking the token's current serial cuts the live session within the revalidation tick (1 s, well within 5 s).
    const cut = nextEvent(second, 'disconnected', 5000)
    const edit = await editSpokesFile(spokesPath, (text) => revokeCertificateSerial(text, 'orion', renewed.serialNumber))
    exitNode.updateSpokes(parseSpokesConfig(edit.after, spokesPath))
    expect(await cut).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('certificate revoked') })
    expect(await nextEvent(second, 'disconnected')).toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', message: expect.stringContaining('client certificate revoked') })
  })

  afterAll(async () => { await killAllProcesses() })

  test('the real CLI: server --auto-tls, agent --join --state-dir: issued, reconnect with it, a fresh state dir is refused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'slk-mtls-cli-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const env = Object.fromEntries(Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined]))
    const spokelink = (args: string[]): RunningProcess => runSpokelink(args, { env })
    const isMsg = (msg: string) => (e: LogEntry): boolean => e.msg === msg
    const spokesPath = join(dir, 'spokes.yaml')
    await writeFile(spokesPath, spokesYaml([{ name: 'orion', requireClientCert: true, tokens: [], ports: [{ upstream: 'prometheus', port: await freePort() }] }]))
    const tlsDir = join(dir, 'tls')
    const server = spokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesPath, '--auto-tls', tlsDir, '--auto-tls-hosts', '127.0.0.1'])
    const port = Number((await server.waitForLog((e) => e.msg === 'listening' && e.listener === 'control', { what: 'the server to listen', timeoutMs: 60_000 })).port)
    // Onboarding is two commands: this one on the hub, `spokelink agent --join …` in the customer's cluster.
    const create = spokelink(['token', 'create', '--spokes', spokesPath, '--spoke', 'orion', '--server', `wss://127.0.0.1:${port}/connect`, '--ca-file', join(tlsDir, AUTO_TLS_FILES.caCert), '--output', 'json'])
    expect(await create.waitForExit({ timeoutMs: 60_000 }), create.tail()).toEqual({ code: 0, signal: null })
    const { joinToken } = JSON.parse(create.stdoutLines.join('')) as { joinToken: string }
    const stateDir = join(dir, 'state')
    const agentArgs = (state: string): string[] => ['agent', '--join', joinToken, '--state-dir', state, '--upstream', 'prometheus=127.0.0.1:9']

    const first = spokelink(agentArgs(stateDir))
    const stored = await first.waitForLog(isMsg('client certificate stored; the next connection presents it'), { what: 'the certificate to be stored', timeoutMs: 60_000 })
    expect(stored).toMatchObject({ renewal: false })
    expect(await server.waitForLog(isMsg('client certificate issued'), { what: 'the server to issue', timeoutMs: 30_000 })).toMatchObject({ serial: stored.serial })
    expect(parseSpokesConfig(await readFile(spokesPath, 'utf8'), spokesPath).spokes[0]?.tokens[0]?.certSerial).toBe(stored.serial)
    expect(await first.kill('SIGTERM')).toEqual({ code: 0, signal: null })

    const second = spokelink(agentArgs(stateDir))
    await second.waitForLog(isMsg('connected'), { what: 'the agent to reconnect with its certificate', timeoutMs: 60_000 })
    expect(second.logs.filter(isMsg('client certificate stored; the next connection presents it'))).toEqual([])

    const copied = spokelink(agentArgs(join(dir, 'state-copied')))
    expect(await copied.waitForLog(isMsg('disconnected'), { what: 'the copied join token to be refused', timeoutMs: 60_000 }))
      .toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN', reason: expect.stringContaining('(403): client certificate required') })
    // Neither the key nor the token's secret is in any output.
    const key = await readFile(join(stateDir, STATE_DIR_FILES.key), 'utf8')
    const secret = decodeJoinToken(joinToken).token.split('_').slice(2).join('_')
    for (const proc of [server, first, second, copied]) {
      expect(proc.output()).not.toContain(secret)
      expect(proc.output()).not.toContain(key.split('\n')[1])
    }
    expect(await copied.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await second.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })
})
