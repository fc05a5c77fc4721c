/**
 * The CA pin of a join token: an agent pinned to the real exit-node CA must refuse a man in the middle before it
 * sends one application byte — no upgrade request line, no Authorization header. Each MITM is a real TLS server on
 * 127.0.0.1:0 that records every byte it receives after the handshake; its certificates name 127.0.0.1, so only
 * the pin tells it apart from the real exit-node.
 */
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import type net from 'node:net'
import { Writable } from 'node:stream'
import tls from 'node:tls'
import { beforeAll, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import pino from 'pino'
import type { Logger } from 'pino'
import type { Agent } from '@spokelink/agent'
import { createServerCertificate, createSpokeToken, decodeJoinToken, encodeJoinToken, parseSpokesConfig } from '@spokelink/auth'
import type { CertificateAndKey, CreatedSpokeToken } from '@spokelink/auth'
import { createMitmCertificates, createTlsFixture, freePort, spokesYaml, subjectKeyIdentifierHex, waitFor } from '@spokelink/testkit'
import type { MitmCertificates, TlsFixture } from '@spokelink/testkit'
import { startAgent, startExitNode } from './in-process-tunnel.js'

const SPOKE = 'orion'

let real: TlsFixture
let mitm: MitmCertificates

beforeAll(async () => {
  real = await createTlsFixture({ hosts: ['127.0.0.1'] })
  mitm = await createMitmCertificates(real.caPem, ['127.0.0.1'])
}, 60_000)

/** What a recording TLS server saw: one entry per accepted connection. */
interface Recorder {
  port: number
  connections: Array<{ bytes: Buffer[], closed: boolean }>
}

/** A TLS server presenting `material` that records every application byte each connection sends it. */
async function startRecorder (material: CertificateAndKey): Promise<Recorder> {
  const recorder: Recorder = { port: 0, connections: [] }
  const server = tls.createServer({ cert: material.certPem, key: material.keyPem })
  // Counted at TCP accept: a client may close before the server's side of the handshake completes.
  server.on('connection', (raw: net.Socket) => {
    const connection = { bytes: [] as Buffer[], closed: false }
    recorder.connections.push(connection)
    raw.on('close', () => { connection.closed = true })
    server.once('secureConnection', (socket: tls.TLSSocket) => {
      socket.on('data', (chunk: Buffer) => { connection.bytes.push(chunk) })
      socket.on('error', () => { /* the agent resets the connection when the pin fails */ })
    })
  })
  server.on('tlsClientError', () => { /* a client that aborts the handshake is not our concern here */ })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('recorder has no port')
  recorder.port = address.port
  onTestFinished(async () => {
    server.close()
    await once(server, 'close')
  })
  return recorder
}

function logLines (): { logger: Logger, lines: string[] } {
  const lines: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _encoding, callback) { lines.push(chunk.toString('utf8')); callback() } })
  onTestFailed(() => { process.stderr.write(`--- logs of the failed test ---\n${lines.join('')}`) })
  return { logger: pino({ level: 'trace' }, sink), lines }
}

/** An agent configured the way `spokelink agent --join` configures it: server, token and pin from the join token. */
async function startJoinedAgent (server: string, token: CreatedSpokeToken, logger: Logger, waitConnected: boolean): Promise<Agent> {
  const join = decodeJoinToken(encodeJoinToken({ server, caSha256: real.caSha256, token: token.token }))
  return startAgent({
    server: join.server,
    token: join.token,
    caSha256: join.caSha256,
    upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: await freePort() }],
    handshakeTimeoutMs: 5000,
  }, logger, waitConnected)
}

describe('an agent pinned to the real CA sends nothing to a man in the middle', () => {
  test('the forged CA really copies the real CA\'s subject and key id, with another key', () => {
    const realCa = new X509Certificate(real.caPem)
    const forged = new X509Certificate(mitm.forgedCaPem)
    expect(forged.subject).toBe(realCa.subject)
    expect(subjectKeyIdentifierHex(mitm.forgedCaPem)).toBe(subjectKeyIdentifierHex(real.caPem))
    expect(subjectKeyIdentifierHex(real.caPem)).toMatch(/^[0-9a-f]{40}$/)
    expect(forged.publicKey.equals(realCa.publicKey)).toBe(false)
    expect(forged.fingerprint256).not.toBe(realCa.fingerprint256)
  })

  test.each([
    ['a server certificate from another CA', 'otherCa'],
    ['a forged CA with the real CA\'s subject and key id', 'forgedCa'],
    ['a forged CA\'s leaf followed by the real CA certificate', 'forgedLeafWithRealCa'],
    ['a rogue CA\'s leaf with the real CA certificate appended to its chain', 'realCaAppended'],
  ] as const)('%s: refused with SLK_ERR_AGENT_TLS_PIN, zero application bytes received', async (_name, which) => {
    const recorder = await startRecorder(mitm[which])
    const token = createSpokeToken()
    const { logger, lines } = logLines()
    const agent = await startJoinedAgent(`wss://127.0.0.1:${recorder.port}/connect`, token, logger, false)
    const [err] = await once(agent, 'disconnected', { signal: AbortSignal.timeout(10_000) }) as [Error & { code?: string }]
    expect(err.code).toBe('SLK_ERR_AGENT_TLS_PIN')
    await agent.close({ graceMs: 0 })

    expect(recorder.connections.length).toBeGreaterThan(0)
    // A connection's bytes have all arrived once it closed; the agent closes each one itself after the pin failed.
    await waitFor(() => recorder.connections.every((connection) => connection.closed), { timeoutMs: 30_000, what: 'the MITM connections closed' })
    const received = Buffer.concat(recorder.connections.flatMap((connection) => connection.bytes))
    expect(received.toString('latin1')).toBe('')
    const logs = lines.join('')
    expect(logs).toContain('SLK_ERR_AGENT_TLS_PIN')
    expect(logs).not.toContain(token.token.slice(`slk_${token.id}_`.length))
  })
})

describe('a certificate of the pinned CA that does not name the host dialled', () => {
  test('refused with SLK_ERR_AGENT_TLS_PIN naming the certificate\'s names and the fix, nothing sent', async () => {
    // What `--auto-tls-hosts hub.example.com` alone gives an agent that dials wss://127.0.0.1.
    const leaf = await createServerCertificate({ certPem: real.caPem, keyPem: real.caKeyPem }, { hosts: ['hub.example.com'] })
    const recorder = await startRecorder({ certPem: leaf.certPem + real.caPem, keyPem: leaf.keyPem })
    const { logger } = logLines()
    const agent = await startJoinedAgent(`wss://127.0.0.1:${recorder.port}/connect`, createSpokeToken(), logger, false)
    const [err] = await once(agent, 'disconnected', { signal: AbortSignal.timeout(10_000) }) as [Error & { code?: string }]
    await agent.close({ graceMs: 0 })
    expect(err).toMatchObject({
      code: 'SLK_ERR_AGENT_TLS_PIN',
      message: "exit-node certificate does not name 127.0.0.1 (it names DNS:hub.example.com); add 127.0.0.1 to the exit-node's --auto-tls-hosts (or its certificate) and restart it, or dial a name it has",
    })
    expect(Buffer.concat(recorder.connections.flatMap((c) => c.bytes)).length).toBe(0)
  })
})

describe('positive controls', () => {
  test('the recorder does see the upgrade request and Authorization header when it presents the real chain', async () => {
    const recorder = await startRecorder({ certPem: real.certPem + real.caPem, keyPem: real.keyPem })
    const token = createSpokeToken()
    const { logger } = logLines()
    const agent = await startJoinedAgent(`wss://127.0.0.1:${recorder.port}/connect`, token, logger, false)
    await waitFor(() => Buffer.concat(recorder.connections.flatMap((c) => c.bytes)).includes('\r\n\r\n'), { timeoutMs: 30_000, what: 'the upgrade request at the recorder' })
    await agent.close({ graceMs: 0 })
    const request = Buffer.concat(recorder.connections.flatMap((c) => c.bytes)).toString('latin1')
    expect(request.startsWith('GET /connect HTTP/1.1\r\n')).toBe(true)
    expect(request.toLowerCase()).toContain(`authorization: bearer ${token.token.toLowerCase()}`)
  })

  test('the real exit-node with the real CA: the pinned agent connects', async () => {
    const token = createSpokeToken()
    const dataPort = await freePort()
    const spokes = parseSpokesConfig(spokesYaml([{ name: SPOKE, tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]), 'test')
    const { logger } = logLines()
    // As `spokelink server --auto-tls` does: the pinned CA travels in the chain, the agent has only its hash.
    const exitNode = await startExitNode(spokes, logger, { tls: { certPem: real.certPem + real.caPem, keyPem: real.keyPem } })
    const agent = await startJoinedAgent(`wss://127.0.0.1:${exitNode.port}/connect`, token, logger, true)
    expect(agent.state).toBe('connected')
  })
})
