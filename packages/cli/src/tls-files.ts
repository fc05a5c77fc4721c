import { X509Certificate, createPrivateKey } from 'node:crypto'
import { constants } from 'node:fs'
import { access, readFile, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { AUTO_TLS_FILES, certificateSha256, checkCertificateHosts } from '@spokelink/auth'
import { CliError } from './errors.js'

/** What `--check-config` reports about a certificate (no key material). */
export interface CertificateSummary {
  subject: string
  subjectAltName: string | undefined
  notAfter: string
  sha256: string
}

function summarize (cert: X509Certificate, pem: string): CertificateSummary {
  return { subject: cert.subject.replaceAll('\n', ', '), subjectAltName: cert.subjectAltName, notAfter: new Date(cert.validTo).toISOString(), sha256: certificateSha256(pem) }
}

/**
 * Parses a certificate (the first of a PEM bundle) named by `flag`.
 * @throws CliError SLK_ERR_CONFIG_TLS naming the flag and file
 */
export function readCertificate (flag: string, path: string, pem: string): { cert: X509Certificate, summary: CertificateSummary } {
  try {
    const cert = new X509Certificate(pem)
    return { cert, summary: summarize(cert, pem) }
  } catch {
    throw new CliError('SLK_ERR_CONFIG_TLS', `--${flag}: ${path} is not a PEM certificate`)
  }
}

/**
 * Checks that `--tls-cert` is a certificate and `--tls-key` its private key, before any socket exists, so a
 * mismatched cert-manager Secret fails at start with one line instead of deep inside the TLS server.
 * @throws CliError SLK_ERR_CONFIG_TLS
 */
export function checkCertificateAndKey (paths: { cert: string, key: string }, pems: { certPem: string, keyPem: string }): CertificateSummary {
  const { cert, summary } = readCertificate('tls-cert', paths.cert, pems.certPem)
  let key
  try {
    key = createPrivateKey(pems.keyPem)
  } catch {
    throw new CliError('SLK_ERR_CONFIG_TLS', `--tls-key: ${paths.key} is not a PEM private key`)
  }
  if (!cert.checkPrivateKey(key)) throw new CliError('SLK_ERR_CONFIG_TLS', `--tls-key: ${paths.key} is not the key of --tls-cert ${paths.cert}`)
  return summary
}

/** What `--check-config` reports about an `--auto-tls` directory. */
export interface AutoTlsInspection {
  dir: string
  hosts: string[]
  /** `existing` when the CA is there (and so every join token's pin stays valid), `create` when a start makes one. */
  ca: 'existing' | 'create'
  caSha256?: string
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

async function nearestExisting (path: string): Promise<string> {
  let current = path
  while (!await exists(current)) {
    const parent = dirname(current)
    if (parent === current) return current
    current = parent
  }
  return current
}

/**
 * What `--auto-tls DIR` would find, without writing: the hosts must be valid certificate names, DIR (or the nearest
 * directory that exists above it) writable, and an existing CA readable and matching its key. A start then makes
 * only what is missing (`ensureAutoTls`).
 * @throws CliError SLK_ERR_CONFIG_TLS
 */
export async function inspectAutoTlsDir (dir: string, hosts: string[]): Promise<AutoTlsInspection> {
  try {
    checkCertificateHosts(hosts)
  } catch (err) {
    throw new CliError('SLK_ERR_CONFIG_TLS', `--auto-tls-hosts: ${err instanceof Error ? err.message : String(err)}`)
  }
  const writable = await nearestExisting(dir)
  try {
    await access(writable, constants.W_OK)
  } catch {
    throw new CliError('SLK_ERR_CONFIG_TLS', `--auto-tls: ${writable} is not writable; the CA and certificate are kept there`)
  }
  const caCertPath = join(dir, AUTO_TLS_FILES.caCert)
  const caKeyPath = join(dir, AUTO_TLS_FILES.caKey)
  const [hasCert, hasKey] = await Promise.all([exists(caCertPath), exists(caKeyPath)])
  if (!hasCert && !hasKey) return { dir, hosts, ca: 'create' }
  if (hasCert !== hasKey) {
    throw new CliError('SLK_ERR_CONFIG_TLS', `--auto-tls: ${dir} holds ${hasCert ? AUTO_TLS_FILES.caCert : AUTO_TLS_FILES.caKey} without ${hasCert ? AUTO_TLS_FILES.caKey : AUTO_TLS_FILES.caCert}; restore it, or remove both to make a new CA (agents pinning the old one must re-join)`)
  }
  let caPem: string
  let caKeyPem: string
  try {
    [caPem, caKeyPem] = await Promise.all([readFile(caCertPath, 'utf8'), readFile(caKeyPath, 'utf8')])
  } catch (err) {
    throw new CliError('SLK_ERR_CONFIG_TLS', `--auto-tls: cannot read the CA in ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`)
  }
  const { cert } = readCertificate('auto-tls', caCertPath, caPem)
  let matches = false
  try {
    matches = cert.checkPrivateKey(createPrivateKey(caKeyPem))
  } catch {
    // an unreadable key is reported just below, like a mismatched one
  }
  if (!matches) throw new CliError('SLK_ERR_CONFIG_TLS', `--auto-tls: ${caKeyPath} is not the key of ${caCertPath}`)
  return { dir, hosts, ca: 'existing', caSha256: certificateSha256(caPem) }
}
