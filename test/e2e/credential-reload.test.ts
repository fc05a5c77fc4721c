/**
 * Issue 10 part 3 on the real CLI: the agent picks up a rotated `--token-file` from a Kubernetes-style Secret volume
 * (a `..data` symlink swap) for its next connect without dropping the live session, and the exit-node picks up a
 * renewed `--tls-cert`/`--tls-key` for new handshakes while a live session keeps carrying data (sha256 of the bytes
 * sent before and after the swap). Child processes of the built bin (`pnpm build`).
 */
import { once } from 'node:events'
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate, randomBytes } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createServerCertificate, createSpokeToken } from '@spokelink/auth'
import { createTlsFixture, freePort, killAllProcesses, listenLoopback, runSpokelink, servedFingerprint, sha256Hex, spokesYaml, waitFor } from '@spokelink/testkit'
import type { LogEntry, RunningProcess, RunProcessOptions } from '@spokelink/testkit'

const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

function spokelink (args: readonly string[], options: RunProcessOptions = {}): RunningProcess {
  return runSpokelink(args, { ...options, env: { ...CLEAN_ENV, ...options.env } })
}

async function runToExit (args: readonly string[]): Promise<string[]> {
  const proc = spokelink(args)
  const exit = await proc.waitForExit({ timeoutMs: 60_000 })
  expect(exit, proc.tail()).toEqual({ code: 0, signal: null })
  return proc.stdoutLines.filter((l) => l !== '')
}

const isMsg = (msg: string) => (e: LogEntry): boolean => e.msg === msg

/** Publishes `files` the way kubelet updates a Secret volume: a new `..<version>` dir, then `..data` renamed over. */
function kubeletSecret (dir: string): (files: Record<string, string>) => Promise<void> {
  let version = 0
  return async (files) => {
    const versionDir = `..2026_12_01_${String(++version)}`
    await mkdir(join(dir, versionDir))
    for (const [key, text] of Object.entries(files)) await writeFile(join(dir, versionDir, key), text, { mode: 0o600 })
    await symlink(versionDir, join(dir, '..data_tmp'))
    await rename(join(dir, '..data_tmp'), join(dir, '..data'))
    if (version === 1) for (const key of Object.keys(files)) await symlink(join('..data', key), join(dir, key))
  }
}

/** An upstream that echoes every byte back. */
async function startEcho (): Promise<{ port: number, close: () => void }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('error', () => { /* reset at the end of the test */ })
    pipeline(socket, socket).catch(() => { /* as above */ })
  })
  const port = await listenLoopback(server)
  return { port, close: () => { for (const s of sockets) s.destroy(); server.close() } }
}

/** A data-plane connection: sends `bytes` random bytes and resolves with the sha256 of what was sent and what came back. */
async function roundTrip (socket: net.Socket, bytes: number): Promise<{ sent: string, received: string }> {
  const payload = randomBytes(bytes)
  const chunks: Buffer[] = []
  let got = 0
  const done = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= bytes) {
        socket.off('data', onData)
        resolve()
      }
    }
    socket.on('data', onData)
    socket.once('close', () => { reject(new Error(`data-plane connection closed after ${String(got)} of ${String(bytes)} bytes`)) })
  })
  socket.write(payload)
  await done
  return { sent: sha256Hex(payload), received: sha256Hex(Buffer.concat(chunks)) }
}

async function dataPlaneConnection (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  return socket
}

describe('credential and certificate files reloaded without restarts (child processes)', () => {
  let dir: string
  let echo: { port: number, close: () => void }
  let count = 0
  const freshDir = async (): Promise<string> => {
    const sub = join(dir, String(++count))
    await mkdir(sub)
    return sub
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spokelink-reload-'))
    echo = await startEcho()
  })

  afterAll(async () => {
    await killAllProcesses()
    echo?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('--token-file in a Secret volume: a ..data swap is used on the next connect, the live session carries on', async () => {
    const sub = await freshDir()
    const old = createSpokeToken()
    const spokes = join(sub, 'spokes.yaml')
    const dataPort = await freePort()
    await writeFile(spokes, spokesYaml([{ name: 'orion', tokens: [old], ports: [{ upstream: 'prometheus', port: dataPort }] }]))
    const secretDir = join(sub, 'secret')
    await mkdir(secretDir)
    const publish = kubeletSecret(secretDir)
    await publish({ token: `${old.token}\n` })

    const server = spokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokes])
    const port = Number((await server.waitForLog(isMsg('listening'), { what: 'the server\'s listening line', timeoutMs: 30_000 })).port)
    const agent = spokelink(['agent', '--server', `ws://127.0.0.1:${String(port)}/connect`, '--token-file', join(secretDir, 'token'), '--upstream', `prometheus=127.0.0.1:${String(echo.port)}`])
    await agent.waitForLog(isMsg('connected'), { what: 'the agent to connect', timeoutMs: 30_000 })
    const socket = await dataPlaneConnection(dataPort)
    const first = await roundTrip(socket, 256 * 1024)
    expect(first.received).toBe(first.sent)

    // Rotate (the real CLI), then publish the new token the way a Secret update lands.
    const rotated = JSON.parse((await runToExit(['token', 'rotate', '--spokes', spokes, '--spoke', 'orion', '--overlap', '1h', '--output', 'json'])).join('')) as { token: string, id: string }
    await publish({ token: `${rotated.token}\n` })
    const changed = await agent.waitForLog(isMsg('credential file changed; the next connection uses the new token'), { what: 'the agent to see the swap', timeoutMs: 30_000 })
    expect(changed).toMatchObject({ file: 'token-file', tokenId: rotated.id })

    // The live session and its data-plane connection are untouched.
    const second = await roundTrip(socket, 256 * 1024)
    expect(second.received).toBe(second.sent)
    expect(agent.logs.filter(isMsg('connected'))).toHaveLength(1)
    expect(agent.logs.filter(isMsg('disconnected'))).toEqual([])

    // Ending the old token (revoke) cuts the session; the agent comes back, and only the new token can do that.
    await runToExit(['token', 'revoke', '--spokes', spokes, old.id])
    await waitFor(() => agent.logs.filter(isMsg('connected')).length === 2, { what: 'the agent to reconnect with the new token', timeoutMs: 30_000 })
    expect(server.logs.filter(isMsg('session revoked')).map((e) => e.tokenId)).toEqual([old.id])
    expect(agent.logs.filter(isMsg('disconnected')).map((e) => (e.err as { message?: string } | undefined)?.message ?? e.message))
      .not.toContainEqual(expect.stringContaining('refused the token'))
    const fresh = await dataPlaneConnection(dataPort)
    const third = await roundTrip(fresh, 64 * 1024)
    expect(third.received).toBe(third.sent)
    fresh.destroy()
    // No secret in any output.
    for (const secret of [old.token, rotated.token]) expect(agent.output() + server.output()).not.toContain(secret.split('_').slice(2).join('_'))
    socket.destroy()
    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })

  test('--tls-cert/--tls-key renewed on disk: new handshakes see the new certificate, a live session keeps carrying data', async () => {
    const sub = await freshDir()
    const token = createSpokeToken()
    const spokes = join(sub, 'spokes.yaml')
    const dataPort = await freePort()
    await writeFile(spokes, spokesYaml([{ name: 'orion', tokens: [token], ports: [{ upstream: 'prometheus', port: dataPort }] }]))
    const fixture = await createTlsFixture({ hosts: ['127.0.0.1', 'localhost'] })
    // The renewal is signed by the same CA, as cert-manager's would be.
    const renewed = await createServerCertificate({ certPem: fixture.caPem, keyPem: fixture.caKeyPem }, { hosts: ['127.0.0.1', 'localhost'] })
    const certPath = join(sub, 'tls.crt')
    const keyPath = join(sub, 'tls.key')
    const caPath = join(sub, 'ca.crt')
    await writeFile(certPath, fixture.certPem)
    await writeFile(keyPath, fixture.keyPem)
    await writeFile(caPath, fixture.caPem)

    const server = spokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokes, '--tls-cert', certPath, '--tls-key', keyPath])
    const port = Number((await server.waitForLog(isMsg('listening'), { what: 'the server\'s listening line', timeoutMs: 30_000 })).port)
    const agent = spokelink(['agent', '--server', `wss://127.0.0.1:${String(port)}/connect`, '--ca-file', caPath, '--token', token.token, '--upstream', `prometheus=127.0.0.1:${String(echo.port)}`])
    await agent.waitForLog(isMsg('connected'), { what: 'the agent to connect over wss', timeoutMs: 30_000 })
    expect(await servedFingerprint(port)).toBe(new X509Certificate(fixture.certPem).fingerprint256)
    const socket = await dataPlaneConnection(dataPort)
    const before = await roundTrip(socket, 512 * 1024)
    expect(before.received).toBe(before.sent)

    // Write-then-rename, like an atomic writer; the key first, so for a moment the pair does not match.
    await writeFile(`${keyPath}.new`, renewed.keyPem)
    await rename(`${keyPath}.new`, keyPath)
    await writeFile(`${certPath}.new`, renewed.certPem)
    await rename(`${certPath}.new`, certPath)
    await server.waitForLog(isMsg('tls files reloaded'), { what: 'the server to reload the renewed pair', timeoutMs: 30_000 })
    expect(await servedFingerprint(port)).toBe(new X509Certificate(renewed.certPem).fingerprint256)

    const after = await roundTrip(socket, 512 * 1024)
    expect(after.received).toBe(after.sent)
    expect(agent.logs.filter(isMsg('connected'))).toHaveLength(1)
    expect(agent.logs.filter(isMsg('disconnected'))).toEqual([])
    expect(server.logs.filter(isMsg('spoke disconnected'))).toEqual([])
    socket.destroy()
    expect(await agent.kill('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null })
  })
})
