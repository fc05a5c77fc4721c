import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto'
import forge from 'node-forge'
import { randomSerial, readSigningAuthority, signLeafCertificate } from './ca-signing.js'
import { AuthError } from './errors.js'
import type { CertificateAndKey } from './tls-material.js'

/** Defaults of spoke client certificates. */
export const CLIENT_CERT_DEFAULTS = {
  /** Lifetime of an issued client certificate (7 days). */
  lifetimeMs: 7 * 86_400_000,
  /** The agent renews when less than this is left (2 days). */
  renewBeforeMs: 2 * 86_400_000,
  /** Tolerated clock skew: certificates are valid from this long before they are issued. */
  skewMs: 5 * 60_000,
  rsaBits: 2048,
} as const

/** Who a client certificate was issued to, and when it is valid. */
export interface ClientCertificateIdentity {
  spoke: string
  tokenId: string
  /** Lowercase hex serial, as stored in the spokes file (`certSerial`, `revokedSerials`). */
  serial: string
  notBefore: Date
  notAfter: Date
}

/**
 * Makes the agent's private key (RSA 2048, PKCS#8 PEM) with Node's native key generation: forge would take seconds
 * in pure JS, and it cannot do EC keys, which its CSR code needs to read.
 */
export function createClientKey (): string {
  return generateKeyPairSync('rsa', { modulusLength: CLIENT_CERT_DEFAULTS.rsaBits }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
}

/**
 * A PKCS#10 request for the key in `keyPem` (signed with it, proving possession). The subject is informational: the
 * exit-node names the certificate after the session's spoke and token, whatever the request says.
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` when the key is not an RSA private key
 */
export function createCertificateRequest (keyPem: string, subject: { spoke: string, tokenId: string }): string {
  let key: forge.pki.rsa.PrivateKey
  try {
    // forge reads PKCS#1 PEM; the Node key object converts whatever PEM the state dir holds.
    key = forge.pki.privateKeyFromPem(createPrivateKey(keyPem).export({ type: 'pkcs1', format: 'pem' }).toString())
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_TLS', 'the client key is not a readable RSA private key', { cause: err })
  }
  const csr = forge.pki.createCertificationRequest()
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e)
  csr.setSubject([{ name: 'commonName', value: subject.spoke }, { name: 'organizationalUnitName', value: subject.tokenId }])
  csr.sign(key, forge.md.sha256.create())
  return forge.pki.certificationRequestToPem(csr)
}

/**
 * Signs a client certificate for `csrPem`'s key: subject CN = spoke, OU = token id, extKeyUsage clientAuth, a random
 * serial, valid from `now - skew` to `now + lifetimeMs`. The request's signature must verify (the requester holds
 * the key); its subject is ignored.
 * @throws {AuthError} `SLK_ERR_AUTH_CSR_INVALID` when the request is not a valid, self-signed RSA PKCS#10 request
 * `SLK_ERR_AUTH_TLS` when the CA cannot be read
 */
export function signClientCertificate (ca: CertificateAndKey, csrPem: string, identity: { spoke: string, tokenId: string, now: Date, lifetimeMs: number }): { certPem: string, serial: string, notAfter: Date } {
  let csr: forge.pki.CertificateSigningRequest
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem)
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_CSR_INVALID', 'certificate request is not a readable PEM PKCS#10 RSA request', { cause: err })
  }
  let verified = false
  try {
    verified = csr.verify()
  } catch {
    verified = false
  }
  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null
  if (!verified || publicKey === null || publicKey.n.bitLength() < CLIENT_CERT_DEFAULTS.rsaBits) {
    throw new AuthError('SLK_ERR_AUTH_CSR_INVALID', `certificate request is not signed by its own key, or its RSA key has fewer than ${CLIENT_CERT_DEFAULTS.rsaBits} bits`)
  }
  const authority = readSigningAuthority(ca, 'client CA')
  const serial = randomSerial()
  const notAfter = new Date(identity.now.getTime() + identity.lifetimeMs)
  const certPem = signLeafCertificate(authority, {
    publicKey,
    serial,
    notBefore: new Date(identity.now.getTime() - CLIENT_CERT_DEFAULTS.skewMs),
    notAfter,
    subject: [{ name: 'commonName', value: identity.spoke }, { name: 'organizationalUnitName', value: identity.tokenId }],
    extensions: [{ name: 'extKeyUsage', clientAuth: true }],
  })
  return { certPem, serial, notAfter: new Date(Math.floor(notAfter.getTime() / 1000) * 1000) }
}

/**
 * Reads a client certificate (PEM or DER) and, when `caPem` is given, checks that this CA signed it.
 * @throws {AuthError} `SLK_ERR_AUTH_CERT_INVALID` when it is unreadable, not signed by the CA, or names no
 * spoke/token
 */
export function readClientCertificate (cert: string | Buffer, caPem?: string): ClientCertificateIdentity {
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_CERT_INVALID', 'client certificate is not readable', { cause: err })
  }
  if (caPem !== undefined) {
    const ca = new X509Certificate(caPem)
    if (!x509.checkIssued(ca) || !x509.verify(ca.publicKey)) throw new AuthError('SLK_ERR_AUTH_CERT_INVALID', 'client certificate was not issued by this exit-node\'s CA')
  }
  const fields = new Map(x509.subject.split('\n').map((line) => {
    const eq = line.indexOf('=')
    return [line.slice(0, eq), line.slice(eq + 1)] as const
  }))
  const spoke = fields.get('CN')
  const tokenId = fields.get('OU')
  if (spoke === undefined || tokenId === undefined) throw new AuthError('SLK_ERR_AUTH_CERT_INVALID', 'client certificate names no spoke (CN) and token (OU)')
  return { spoke, tokenId, serial: x509.serialNumber.toLowerCase(), notBefore: new Date(x509.validFrom), notAfter: new Date(x509.validTo) }
}
