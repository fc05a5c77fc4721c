import { once } from 'node:events'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { describe, expect, onTestFinished, test } from 'vitest'
import { createTlsFixture, deterministicSource, expectedSha256, hashStream, waitFor } from '@spokelink/testkit'
import { startTlsAfterFirstBytes } from '../src/tls-after-first-bytes.js'

interface Started {
  server: tls.Server
  port: number
  caPem: string
  secured: tls.TLSSocket[]
  clientErrors: NodeJS.ErrnoException[]
}

async function startServer (handshakeTimeoutMs = 30_000, extra?: (socket: net.Socket) => void): Promise<Started> {
  const fixture = await createTlsFixture()
  const secured: tls.TLSSocket[] = []
  const clientErrors: NodeJS.ErrnoException[] = []
  const server = tls.createServer({ cert: fixture.certPem, key: fixture.keyPem }, (socket) => {
    secured.push(socket)
    socket.on('error', () => { /* the client went away */ })
    socket.pipe(socket)
  })
  startTlsAfterFirstBytes(server, handshakeTimeoutMs)
  if (extra !== undefined) server.on('connection', extra)
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    clientErrors.push(err)
    socket.destroy()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(() => { server.close() })
  return { server, port: (server.address() as AddressInfo).port, caPem: fixture.caPem, secured, clientErrors }
}

async function connectRaw (port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port })
  onTestFinished(() => { socket.destroy() })
  socket.on('error', () => { /* closed by the server */ })
  await once(socket, 'connect')
  return socket
}

describe('startTlsAfterFirstBytes', () => {
  test('TLS starts on the first bytes and carries every byte both ways (sha256 of 1 MiB echoed)', async () => {
    const { port, caPem, secured, clientErrors } = await startServer()
    const client = tls.connect({ host: '127.0.0.1', port, ca: caPem })
    onTestFinished(() => { client.destroy() })
    await once(client, 'secureConnect')
    const bytes = 1024 * 1024
    const echoed = hashStream(client)
    deterministicSource(bytes, 12).pipe(client)
    expect(await echoed).toEqual({ bytes, sha256: expectedSha256(bytes, 12) })
    expect(secured).toHaveLength(1)
    expect(clientErrors).toEqual([])
  })

  test('a connection that sends nothing gets the handshake timeout: tlsClientError ERR_TLS_HANDSHAKE_TIMEOUT, socket closed', async () => {
    const { clientErrors, secured, port } = await startServer(200)
    const silent = await connectRaw(port)
    await once(silent, 'close')
    expect(clientErrors.map((e) => e.code)).toEqual(['ERR_TLS_HANDSHAKE_TIMEOUT'])
    expect(secured).toEqual([])
  })

  test('a peer that ends before its first byte is closed without a TLS socket or a TLS error', async () => {
    let accepted: net.Socket | undefined
    const { clientErrors, secured, port } = await startServer(30_000, (socket) => { accepted = socket })
    const quitter = await connectRaw(port)
    quitter.end()
    await waitFor(() => accepted?.destroyed === true, { what: 'the server to close the ended socket' })
    expect(clientErrors).toEqual([])
    expect(secured).toEqual([])
  })

  test('a reset before the first byte, and a socket another listener destroyed, cost nothing else', async () => {
    const accepted: net.Socket[] = []
    const { clientErrors, secured, port } = await startServer(30_000, (socket) => {
      accepted.push(socket)
      // As the front door does over its cap: destroyed in the same 'connection' emit.
      if (accepted.length === 2) socket.destroy()
    })
    const reset = await connectRaw(port)
    await waitFor(() => accepted.length === 1, { what: 'the first connection accepted' })
    reset.resetAndDestroy()
    const refused = await connectRaw(port)
    refused.write('bytes that arrive after the socket was destroyed')
    await waitFor(() => accepted.length === 2 && accepted.every((s) => s.destroyed), { what: 'both sockets closed' })
    // The server still serves: a TLS client after them gets through.
    const client = tls.connect({ host: '127.0.0.1', port, ca: (await createTlsFixture()).caPem })
    onTestFinished(() => { client.destroy() })
    await once(client, 'secureConnect')
    client.end('ping')
    const [echo] = await once(client, 'data') as [Buffer]
    expect(echo.toString()).toBe('ping')
    expect(secured).toHaveLength(1)
    expect(clientErrors).toEqual([])
  })

  test('refuses a server whose connection listeners are not only the TLS server\'s own', () => {
    const server = tls.createServer({})
    server.on('connection', () => {})
    expect(() => { startTlsAfterFirstBytes(server, 1000) }).toThrow('expected only the TLS server\'s own connection listener, found 2')
  })
})
