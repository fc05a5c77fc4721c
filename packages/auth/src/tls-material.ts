import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import forge from 'node-forge'
import { randomSerial, readSigningAuthority, signLeafCertificate } from './ca-signing.js'
import { AuthError } from './errors.js'
import { writeFileAtomic } from './write-file-atomic.js'

/** A PEM certificate and its PEM (PKCS#1 RSA) private key. */
export interface CertificateAndKey {
  /** The certificate, PEM. */
  certPem: string
  /** The private key, PEM. Secret. */
  keyPem: string
}

/** Options of {@link createCertificateAuthority}. */
export interface CertificateAuthorityOptions {
  /**
   * Subject common name of the CA.
   * @default 'spokelink CA'
   */
  commonName?: string
  /**
   * Validity in days from now.
   * @default 3650
   */
  validDays?: number
}

/** Options of {@link createServerCertificate}. */
export interface ServerCertificateOptions {
  /** DNS names (`*.example.com` allowed) and IP addresses the certificate is valid for; each becomes a SAN. */
  hosts: string[]
  /**
   * Validity in days from now.
   * @default 825
   */
  validDays?: number
}

/** Options of {@link ensureAutoTls}. */
export interface AutoTlsOptions {
  /** DNS names and IPs the server certificate must cover. */
  hosts: string[]
  /**
   * The server certificate is re-issued (by the same CA, so `caSha256` is unchanged) when it expires within this
   * many days.
   * @default 30
   */
  renewBeforeDays?: number
}

/** What {@link ensureAutoTls} returns: the server's certificate and key, plus the CA to trust or pin. */
export interface AutoTlsMaterial extends CertificateAndKey {
  /** The CA certificate, PEM (for `--ca-file`). */
  caPem: string
  /** {@link certificateSha256} of the CA: the value join tokens pin as `caSha256`. */
  caSha256: string
}

/** Defaults of the TLS options. */
export const TLS_DEFAULTS = {
  caCommonName: 'spokelink CA',
  caValidDays: 3650,
  serverValidDays: 825,
  renewBeforeDays: 30,
  rsaBits: 2048,
} as const

/** File names {@link ensureAutoTls} keeps in its directory. */
export const AUTO_TLS_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  cert: 'tls.crt',
  key: 'tls.key',
} as const

const DAY_MS = 86_400_000
// Certificates are back-dated a little so a peer whose clock is slightly behind still accepts them.
const CLOCK_SKEW_MS = 5 * 60_000
const DNS_NAME_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i

/**
 * Creates a self-signed CA (RSA 2048, sha256) for signing the exit-node's server certificate. Key generation uses
 * node-forge's callback API, which runs Node's native keygen off the main thread.
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` when an option is invalid or key generation fails
 */
export async function createCertificateAuthority (options: CertificateAuthorityOptions = {}): Promise<CertificateAndKey> {
  const commonName = options.commonName ?? TLS_DEFAULTS.caCommonName
  const validDays = options.validDays ?? TLS_DEFAULTS.caValidDays
  validateValidDays(validDays, 'validDays')
  if (commonName.length === 0 || commonName.length > 64) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `commonName: expected 1-64 characters, got ${commonName.length}`)
  }
  const keys = await generateRsaKeyPair()
  const cert = forge.pki.createCertificate()
  cert.publicKey = keys.publicKey
  cert.serialNumber = randomSerial()
  setValidity(cert, validDays)
  const subject = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'spokelink' }]
  cert.setSubject(subject)
  cert.setIssuer(subject)
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ])
  cert.sign(keys.privateKey, forge.md.sha256.create())
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) }
}

/**
 * Creates a server certificate (RSA 2048, sha256, serverAuth) signed by `ca`, with every entry of `hosts` as a
 * subjectAltName: IPs as IP SANs, everything else as DNS SANs.
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` when `hosts` is empty or holds something that is neither an IP nor a DNS
 * name, when `ca` cannot be read, or when key generation fails
 */
export async function createServerCertificate (ca: CertificateAndKey, options: ServerCertificateOptions): Promise<CertificateAndKey> {
  const validDays = options.validDays ?? TLS_DEFAULTS.serverValidDays
  validateValidDays(validDays, 'validDays')
  const altNames = toAltNames(options.hosts)
  const authority = readSigningAuthority(ca, 'CA')
  const keys = await generateRsaKeyPair()
  const now = Date.now()
  const first = options.hosts[0] ?? 'spokelink'
  const certPem = signLeafCertificate(authority, {
    publicKey: keys.publicKey,
    serial: randomSerial(),
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + validDays * DAY_MS),
    subject: [{ name: 'commonName', value: first.length <= 64 ? first : 'spokelink' }],
    extensions: [
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
      { name: 'subjectKeyIdentifier' },
    ],
  })
  return { certPem, keyPem: forge.pki.privateKeyToPem(keys.privateKey) }
}

/**
 * Returns the exit-node's auto-TLS material kept in `dir` (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`; keys mode
 * 0600, directory 0700), creating what is missing. The CA is made once and then always reused, so `caSha256` (what
 * join tokens pin) stays stable. The server certificate is reused while it is signed by that CA, matches its key,
 * covers every entry of `hosts` and does not expire within `renewBeforeDays`; otherwise it is re-issued. Files are
 * written atomically (temp file + rename).
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` when only one of `ca.crt`/`ca.key` exists, a file is unreadable or not a
 * certificate/key, or `hosts` is invalid
 */
export async function ensureAutoTls (dir: string, options: AutoTlsOptions): Promise<AutoTlsMaterial> {
  const renewBeforeDays = options.renewBeforeDays ?? TLS_DEFAULTS.renewBeforeDays
  toAltNames(options.hosts) // validate before touching the disk
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const paths = {
    caCert: join(dir, AUTO_TLS_FILES.caCert),
    caKey: join(dir, AUTO_TLS_FILES.caKey),
    cert: join(dir, AUTO_TLS_FILES.cert),
    key: join(dir, AUTO_TLS_FILES.key),
  }
  const [caCertPem, caKeyPem, certPem, keyPem] = await Promise.all([
    readOptional(paths.caCert), readOptional(paths.caKey), readOptional(paths.cert), readOptional(paths.key),
  ])

  let ca: CertificateAndKey
  if (caCertPem === undefined && caKeyPem === undefined) {
    ca = await createCertificateAuthority()
    await writeAtomic(paths.caKey, ca.keyPem, 0o600)
    await writeAtomic(paths.caCert, ca.certPem, 0o644)
  } else if (caCertPem === undefined || caKeyPem === undefined) {
    const [present, missing] = caCertPem === undefined ? [AUTO_TLS_FILES.caKey, AUTO_TLS_FILES.caCert] : [AUTO_TLS_FILES.caCert, AUTO_TLS_FILES.caKey]
    throw new AuthError('SLK_ERR_AUTH_TLS', `${dir}: ${present} exists but ${missing} does not; restore it, or remove ${present} to create a new CA (agents pinning the old CA must then be re-joined)`)
  } else {
    ca = { certPem: caCertPem, keyPem: caKeyPem }
  }
  const caX509 = readCertificate(ca.certPem, paths.caCert)
  if (!caX509.checkPrivateKey(readPrivateKey(ca.keyPem, paths.caKey))) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `${paths.caKey} does not match ${paths.caCert}`)
  }

  let server: CertificateAndKey | undefined
  if (certPem !== undefined && keyPem !== undefined &&
    isReusable(certPem, keyPem, caX509, options.hosts, renewBeforeDays)) {
    server = { certPem, keyPem }
  }
  if (server === undefined) {
    server = await createServerCertificate(ca, { hosts: options.hosts })
    await writeAtomic(paths.key, server.keyPem, 0o600)
    await writeAtomic(paths.cert, server.certPem, 0o644)
  }
  return { certPem: server.certPem, keyPem: server.keyPem, caPem: ca.certPem, caSha256: certificateSha256(ca.certPem) }
}

/**
 * Checks that every entry of `hosts` can be a subjectAltName of the server certificate (what {@link ensureAutoTls}
 * checks before it touches the disk), so a configuration can be validated without writing anything.
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` when `hosts` is empty or holds something that is neither an IP nor a DNS name
 */
export function checkCertificateHosts (hosts: string[]): void {
  toAltNames(hosts)
}

/**
 * Lowercase hex sha256 of a certificate's DER encoding (the first certificate of a PEM bundle). This is what join
 * tokens pin as `caSha256`, and it equals Node's `X509Certificate.fingerprint256` without colons, lowercased.
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` when `pem` holds no certificate
 */
export function certificateSha256 (pem: string): string {
  const match = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem)
  const body = match?.[1]
  if (body === undefined) throw new AuthError('SLK_ERR_AUTH_TLS', 'expected a PEM certificate (-----BEGIN CERTIFICATE-----)')
  const der = Buffer.from(body.replace(/\s+/g, ''), 'base64')
  return createHash('sha256').update(der).digest('hex')
}

async function generateRsaKeyPair (): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    // The callback form makes forge use crypto.generateKeyPair (native, async) instead of its JS prime search.
    forge.pki.rsa.generateKeyPair({ bits: TLS_DEFAULTS.rsaBits, e: 0x10001 }, (err, keypair) => {
      // forge's typing says `err: Error`, but it passes null on success.
      if (err !== null && err !== undefined) {
        reject(new AuthError('SLK_ERR_AUTH_TLS', 'RSA key generation failed', { cause: err }))
      } else {
        resolve(keypair)
      }
    })
  })
}

function setValidity (cert: forge.pki.Certificate, validDays: number): void {
  const now = Date.now()
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS)
  cert.validity.notAfter = new Date(now + validDays * DAY_MS)
}

function validateValidDays (validDays: number, name: string): void {
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > 36500) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `${name}: expected an integer number of days between 1 and 36500, got ${String(validDays)}`)
  }
}

type AltName = { type: 2, value: string } | { type: 7, ip: string }

function toAltNames (hosts: string[]): AltName[] {
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw new AuthError('SLK_ERR_AUTH_TLS', 'hosts: expected at least one DNS name or IP address for the server certificate')
  }
  return hosts.map((host, i) => {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
    if (isIP(bare) !== 0) return { type: 7, ip: bare }
    if (host.length <= 253 && DNS_NAME_PATTERN.test(host)) return { type: 2, value: host.toLowerCase() }
    throw new AuthError('SLK_ERR_AUTH_TLS', `hosts[${i}]: expected a DNS name or an IP address, got ${JSON.stringify(host.slice(0, 80))}`)
  })
}

function isReusable (certPem: string, keyPem: string, ca: X509Certificate, hosts: string[], renewBeforeDays: number): boolean {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return false
  } catch {
    // An unreadable server certificate or key is simply re-issued; the CA is what must never change silently.
    return false
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false
  if (Date.parse(cert.validTo) - Date.now() < renewBeforeDays * DAY_MS) return false
  const dnsNames = new Set((cert.subjectAltName ?? '').split(', ')
    .filter((san) => san.startsWith('DNS:'))
    .map((san) => san.slice('DNS:'.length).toLowerCase()))
  return hosts.every((host) => {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
    // Exact SAN match (not checkHost) so a wildcard in `hosts` is compared as written.
    return isIP(bare) !== 0 ? cert.checkIP(bare) !== undefined : dnsNames.has(host.toLowerCase())
  })
}

function readCertificate (pem: string, path: string): X509Certificate {
  try {
    return new X509Certificate(pem)
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `${path}: not a PEM certificate`, { cause: err })
  }
}

function readPrivateKey (pem: string, path: string): ReturnType<typeof createPrivateKey> {
  try {
    return createPrivateKey(pem)
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `${path}: not a PEM private key`, { cause: err })
  }
}

async function readOptional (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if (isErrnoException(err) && err.code === 'ENOENT') return undefined
    throw new AuthError('SLK_ERR_AUTH_TLS', `${path}: cannot read (${isErrnoException(err) ? String(err.code) : 'unknown error'})`, { cause: err })
  }
}

async function writeAtomic (path: string, content: string, mode: number): Promise<void> {
  try {
    await writeFileAtomic(path, content, { mode })
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `${path}: cannot write (${isErrnoException(err) ? String(err.code) : 'unknown error'})`, { cause: err })
  }
}

function isErrnoException (err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && 'code' in err
}
