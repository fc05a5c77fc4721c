import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { certificateSha256, createCertificateAuthority, createServerCertificate } from '@spokelink/auth'

/** Options for {@link createTlsFixture}. */
export interface TlsFixtureOptions {
  /**
   * DNS names and IPs the server certificate covers.
   * @default ['127.0.0.1', 'localhost']
   */
  hosts?: string[]
}

/** A throwaway CA and a server certificate it signed. */
export interface TlsFixture {
  /** The CA certificate, PEM: what a client trusts (`--ca-file`). */
  readonly caPem: string
  /** The CA's private key, PEM, to sign more certificates in a test. */
  readonly caKeyPem: string
  /** The server certificate, PEM (`--tls-cert`). */
  readonly certPem: string
  /** The server's private key, PEM (`--tls-key`). */
  readonly keyPem: string
  /** Lower-case hex sha256 of the CA certificate's DER: a join token's `caSha256`. */
  readonly caSha256: string
}

const cache = new Map<string, Promise<TlsFixture>>()

/**
 * Makes a CA and a server certificate for `hosts` with `@spokelink/auth` (the same code the exit-node's
 * `--auto-tls` uses). RSA key generation is slow-ish, so results are cached per `hosts` for the life
 * of the test process; the returned object is frozen.
 *
 * @throws AuthError `SLK_ERR_AUTH_TLS` when a host is neither an IP nor a DNS name.
 */
export async function createTlsFixture (options: TlsFixtureOptions = {}): Promise<TlsFixture> {
  const hosts = options.hosts ?? ['127.0.0.1', 'localhost']
  const key = JSON.stringify(hosts)
  let fixture = cache.get(key)
  if (fixture === undefined) {
    fixture = makeFixture(hosts)
    cache.set(key, fixture)
    // A failed attempt is not cached, so the next caller sees a fresh error instead of a stale one.
    fixture.catch(() => { cache.delete(key) })
  }
  return fixture
}

async function makeFixture (hosts: string[]): Promise<TlsFixture> {
  const ca = await createCertificateAuthority({ commonName: 'spokelink testkit CA' })
  const server = await createServerCertificate(ca, { hosts: [...hosts] })
  return Object.freeze({
    caPem: ca.certPem,
    caKeyPem: ca.keyPem,
    certPem: server.certPem,
    keyPem: server.keyPem,
    caSha256: certificateSha256(ca.certPem),
  })
}

/** A {@link TlsFixture} written to files, for processes that take paths (`--tls-cert`, `--ca-file`). */
export interface TlsFixtureFiles {
  /** The CA certificate, PEM text, as in the fixture. */
  readonly caPem: string
  readonly caFile: string
  readonly certFile: string
  /** Written with mode 0600, as a real key would be. */
  readonly keyFile: string
}

/**
 * Writes the CA certificate, the server certificate and its key of `createTlsFixture(options)` under
 * `dir` (`ca.pem`, `server.pem`, `server-key.pem`).
 */
export async function writeTlsFixtureFiles (dir: string, options: TlsFixtureOptions = {}): Promise<TlsFixtureFiles> {
  const fixture = await createTlsFixture(options)
  const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server-key.pem') }
  await writeFile(files.caFile, fixture.caPem)
  await writeFile(files.certFile, fixture.certPem)
  await writeFile(files.keyFile, fixture.keyPem, { mode: 0o600 })
  return { caPem: fixture.caPem, ...files }
}
