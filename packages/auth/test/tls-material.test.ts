import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, stat, unlink } from 'node:fs/promises'
import { createServer, request } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { beforeAll, describe, expect, onTestFinished, test } from 'vitest'
import {
  certificateSha256,
  createCertificateAuthority,
  createServerCertificate,
  ensureAutoTls,
} from '../src/index.js'
import type { CertificateAndKey } from '../src/index.js'

let ca: CertificateAndKey
let server: CertificateAndKey

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'test CA', validDays: 2 })
  server = await createServerCertificate(ca, { hosts: ['localhost', '127.0.0.1', '::1'], validDays: 2 })
})

async function listen (material: CertificateAndKey): Promise<number> {
  const srv = createServer({ cert: material.certPem, key: material.keyPem }, (_req, res) => { res.end('hello over tls') })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  onTestFinished(async () => {
    srv.closeAllConnections()
    await new Promise<void>((resolve) => srv.close(() => { resolve() }))
  })
  return (srv.address() as AddressInfo).port
}

async function get (port: number, options: { servername?: string, ca: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', ca: options.ca, servername: options.servername, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve(body) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

async function tlsError (port: number, options: { servername?: string, ca: string }): Promise<unknown> {
  const socket = connect({ host: '127.0.0.1', port, ca: options.ca, servername: options.servername })
  onTestFinished(() => { socket.destroy() })
  const [err] = await once(socket, 'error')
  return err
}

describe('TLS material', () => {
  test('a server cert signed by the CA serves https to a client trusting only that CA (IP SAN)', async () => {
    const port = await listen(server)
    expect(await get(port, { ca: ca.certPem })).toBe('hello over tls')
  })

  test('DNS SAN works via servername', async () => {
    const port = await listen(server)
    expect(await get(port, { ca: ca.certPem, servername: 'localhost' })).toBe('hello over tls')
  })

  test('a name outside the SANs is refused', async () => {
    const port = await listen(server)
    expect(await tlsError(port, { ca: ca.certPem, servername: 'evil.example.com' })).toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' })
  })

  test('a client trusting another CA is refused', async () => {
    const other = await createCertificateAuthority()
    const port = await listen(server)
    expect(await tlsError(port, { ca: other.certPem, servername: 'localhost' })).toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
  })

  test('certificates have the expected shape', () => {
    const caX = new X509Certificate(ca.certPem)
    const srvX = new X509Certificate(server.certPem)
    expect(caX.ca).toBe(true)
    expect(srvX.ca).toBe(false)
    expect(srvX.checkIssued(caX)).toBe(true)
    expect(srvX.verify(caX.publicKey)).toBe(true)
    expect(srvX.subjectAltName).toContain('DNS:localhost')
    expect(srvX.subjectAltName).toContain('IP Address:127.0.0.1')
    expect(srvX.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048)
    expect(Date.parse(srvX.validTo) - Date.now()).toBeGreaterThan(86_400_000)
    expect(Date.parse(srvX.validTo) - Date.now()).toBeLessThanOrEqual(2 * 86_400_000)
  })

  test('certificateSha256 is sha256 of the DER and equals X509Certificate.fingerprint256', () => {
    for (const pem of [ca.certPem, server.certPem]) {
      const x = new X509Certificate(pem)
      expect(certificateSha256(pem)).toBe(x.fingerprint256.replaceAll(':', '').toLowerCase())
      expect(certificateSha256(pem)).toMatch(/^[0-9a-f]{64}$/)
    }
    expect(certificateSha256(`${ca.certPem}${server.certPem}`)).toBe(certificateSha256(ca.certPem))
    expect(() => certificateSha256('nope')).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TLS' }))
  })

  test('bad hosts are rejected with SLK_ERR_AUTH_TLS', async () => {
    await expect(createServerCertificate(ca, { hosts: [] })).rejects.toMatchObject({ code: 'SLK_ERR_AUTH_TLS' })
    await expect(createServerCertificate(ca, { hosts: ['not a host'] })).rejects.toMatchObject({ code: 'SLK_ERR_AUTH_TLS', message: expect.stringContaining('hosts[0]') })
    await expect(createCertificateAuthority({ validDays: 0 })).rejects.toMatchObject({ code: 'SLK_ERR_AUTH_TLS' })
  })
})

describe('ensureAutoTls', () => {
  async function tempDir (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'slk-auth-tls-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    return join(dir, 'auto-tls')
  }

  test('creates the files once (keys 0600) and reuses them on later calls', async () => {
    const dir = await tempDir()
    const first = await ensureAutoTls(dir, { hosts: ['localhost', '127.0.0.1'] })
    for (const [file, mode] of [['ca.key', 0o600], ['tls.key', 0o600], ['ca.crt', 0o644], ['tls.crt', 0o644]] as const) {
      expect((await stat(join(dir, file))).mode & 0o777).toBe(mode)
    }
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect(first.caPem).toBe(await readFile(join(dir, 'ca.crt'), 'utf8'))
    expect(first.certPem).toBe(await readFile(join(dir, 'tls.crt'), 'utf8'))
    expect(first.keyPem).toBe(await readFile(join(dir, 'tls.key'), 'utf8'))
    expect(first.caSha256).toBe(certificateSha256(first.caPem))

    const second = await ensureAutoTls(dir, { hosts: ['127.0.0.1', 'localhost'] })
    expect(second).toEqual(first)

    const port = await listen(second)
    expect(await get(port, { ca: second.caPem, servername: 'localhost' })).toBe('hello over tls')
  })

  test('a new host re-issues the server cert from the same CA (caSha256 unchanged)', async () => {
    const dir = await tempDir()
    const first = await ensureAutoTls(dir, { hosts: ['localhost'] })
    const second = await ensureAutoTls(dir, { hosts: ['localhost', 'hub.example.com'] })
    expect(second.caSha256).toBe(first.caSha256)
    expect(second.certPem).not.toBe(first.certPem)
    expect(new X509Certificate(second.certPem).subjectAltName).toContain('DNS:hub.example.com')
  })

  test('a missing server key re-issues; a CA cert without its key is an error', async () => {
    const dir = await tempDir()
    const first = await ensureAutoTls(dir, { hosts: ['localhost'] })
    await unlink(join(dir, 'tls.key'))
    const second = await ensureAutoTls(dir, { hosts: ['localhost'] })
    expect(second.caSha256).toBe(first.caSha256)
    expect(second.keyPem).not.toBe(first.keyPem)
    await unlink(join(dir, 'ca.key'))
    await expect(ensureAutoTls(dir, { hosts: ['localhost'] })).rejects.toMatchObject({ code: 'SLK_ERR_AUTH_TLS', message: expect.stringContaining('ca.key') })
  })
})
