import { randomBytes } from 'node:crypto'
import forge from 'node-forge'
import { AuthError } from './errors.js'

/** A CA read from PEM, ready to sign. */
export interface SigningAuthority {
  cert: forge.pki.Certificate
  key: forge.pki.rsa.PrivateKey
}

/** What differs between the leaf certificates a CA of ours signs (server and client). */
export interface LeafCertificate {
  publicKey: forge.pki.PublicKey
  serial: string
  notBefore: Date
  notAfter: Date
  subject: forge.pki.CertificateField[]
  /** Between keyUsage and authorityKeyIdentifier: the extKeyUsage, and for a server its SANs and key identifier. */
  extensions: unknown[]
}

/**
 * Reads a CA's PEM certificate and RSA key.
 * @throws {AuthError} `SLK_ERR_AUTH_TLS` "`what` certificate or key is not a readable PEM RSA certificate/key"
 */
export function readSigningAuthority (ca: { certPem: string, keyPem: string }, what: string): SigningAuthority {
  try {
    return { cert: forge.pki.certificateFromPem(ca.certPem), key: forge.pki.privateKeyFromPem(ca.keyPem) }
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_TLS', `${what} certificate or key is not a readable PEM RSA certificate/key`, { cause: err })
  }
}

/** Signs a leaf certificate (not a CA; digitalSignature and keyEncipherment; sha256) with `ca`, as PEM. */
export function signLeafCertificate (ca: SigningAuthority, leaf: LeafCertificate): string {
  const cert = forge.pki.createCertificate()
  cert.publicKey = leaf.publicKey
  cert.serialNumber = leaf.serial
  cert.validity.notBefore = leaf.notBefore
  cert.validity.notAfter = leaf.notAfter
  cert.setSubject(leaf.subject)
  cert.setIssuer(ca.cert.subject.attributes)
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    ...leaf.extensions,
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() },
  ])
  cert.sign(ca.key, forge.md.sha256.create())
  return forge.pki.certificateToPem(cert)
}

/** A random 128-bit serial as lowercase hex: positive and without a leading zero byte, so the DER INTEGER is minimal (RFC 5280 §4.1.2.2) and reads back as the same hex. */
export function randomSerial (): string {
  const bytes = randomBytes(16)
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40
  return bytes.toString('hex')
}
