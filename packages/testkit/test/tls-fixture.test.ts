import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import { createServer } from 'node:https'
import { request } from 'node:https'
import { beforeAll, describe, expect, onTestFinished, test } from 'vitest'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTlsFixture, listenLoopback, writeTlsFixtureFiles } from '@spokelink/testkit'
import type { TlsFixture } from '@spokelink/testkit'

describe('createTlsFixture', () => {
  let tls: TlsFixture
  beforeAll(async () => {
    tls = await createTlsFixture()
  })

  test('pins the CA by the sha256 of its DER', () => {
    const fingerprint = new X509Certificate(tls.caPem).fingerprint256.replaceAll(':', '').toLowerCase()
    expect(tls.caSha256).toBe(fingerprint)
    expect(new X509Certificate(tls.certPem).checkIssued(new X509Certificate(tls.caPem))).toBe(true)
  })

  test('is cached per hosts list', async () => {
    expect(await createTlsFixture()).toBe(tls)
    expect(await createTlsFixture({ hosts: ['127.0.0.1', 'localhost'] })).toBe(tls)
  })

  test('serves HTTPS on 127.0.0.1 that a client trusting only the CA accepts', async () => {
    const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (_req, res) => { res.end('ok') })
    onTestFinished(() => { server.closeAllConnections(); server.close() })
    const port = await listenLoopback(server)
    const req = request({ host: '127.0.0.1', port, path: '/', ca: tls.caPem, agent: false })
    req.end()
    const [res] = await once(req, 'response') as [NodeJS.ReadableStream & { statusCode?: number }]
    let body = ''
    for await (const chunk of res) body += String(chunk)
    expect(res.statusCode).toBe(200)
    expect(body).toBe('ok')
  })
})

describe('writeTlsFixtureFiles', () => {
  test('writes the fixture\'s CA, certificate and key (0600) for processes that take paths', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'testkit-tls-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const files = await writeTlsFixtureFiles(dir)
    const fixture = await createTlsFixture()
    expect(files).toEqual({ caPem: fixture.caPem, caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server-key.pem') })
    expect(await readFile(files.caFile, 'utf8')).toBe(fixture.caPem)
    expect(await readFile(files.certFile, 'utf8')).toBe(fixture.certPem)
    expect(await readFile(files.keyFile, 'utf8')).toBe(fixture.keyPem)
    expect((await stat(files.keyFile)).mode & 0o777).toBe(0o600)
  })
})
