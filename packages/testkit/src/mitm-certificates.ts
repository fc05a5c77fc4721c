import { randomBytes } from 'node:crypto'
import forge from 'node-forge'
import { createCertificateAuthority, createServerCertificate } from '@spokelink/auth'
import type { CertificateAndKey } from '@spokelink/auth'

/**
 * Server certificate chains (`certPem` holds leaf first, then the rest) a man in the middle could present in place
 * of the exit-node whose CA is `realCaPem`. None is signed by the real CA's key.
 */
export interface MitmCertificates {
  /** A leaf from an unrelated CA, followed by that CA. */
  readonly otherCa: CertificateAndKey
  /** A leaf signed by a forged CA (the real CA's subject DN and subject key identifier, another key), followed by the forged CA. */
  readonly forgedCa: CertificateAndKey
  /** The forged CA's leaf followed by the real CA certificate: issuer name and key id line up, only the signature does not. */
  readonly forgedLeafWithRealCa: CertificateAndKey
  /** A leaf from a rogue CA, followed by the rogue CA and then the real CA certificate appended. */
  readonly realCaAppended: CertificateAndKey
  /** The forged CA certificate itself, PEM, to check it really copies the real one's subject and key id. */
  readonly forgedCaPem: string
}

/**
 * Makes the certificate chains of {@link MitmCertificates} for `hosts` (each leaf names them, so only the CA pin can
 * tell them apart from the real exit-node). Keys are RSA 2048 from Node's native keygen.
 */
export async function createMitmCertificates (realCaPem: string, hosts: string[]): Promise<MitmCertificates> {
  const realCa = forge.pki.certificateFromPem(realCaPem)
  const realKeyId = keyIdentifierBytes(realCa)

  const other = await createCertificateAuthority({ commonName: 'mitm other CA' })
  const otherLeaf = await createServerCertificate(other, { hosts })

  const forgedKeys = await generateKeyPair()
  const forgedCa = forge.pki.createCertificate()
  forgedCa.publicKey = forgedKeys.publicKey
  forgedCa.serialNumber = serial()
  setValidity(forgedCa)
  forgedCa.setSubject(realCa.subject.attributes)
  forgedCa.setIssuer(realCa.subject.attributes)
  forgedCa.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier', value: octetString(realKeyId) },
  ])
  forgedCa.sign(forgedKeys.privateKey, forge.md.sha256.create())
  const forgedCaPem = forge.pki.certificateToPem(forgedCa)
  const forgedLeaf = await signLeaf(realCa.subject.attributes, realKeyId, forgedKeys.privateKey, hosts)

  const rogue = await createCertificateAuthority({ commonName: 'mitm rogue CA' })
  const rogueLeaf = await createServerCertificate(rogue, { hosts })

  return Object.freeze({
    otherCa: { certPem: otherLeaf.certPem + other.certPem, keyPem: otherLeaf.keyPem },
    forgedCa: { certPem: forgedLeaf.certPem + forgedCaPem, keyPem: forgedLeaf.keyPem },
    forgedLeafWithRealCa: { certPem: forgedLeaf.certPem + realCaPem, keyPem: forgedLeaf.keyPem },
    realCaAppended: { certPem: rogueLeaf.certPem + rogue.certPem + realCaPem, keyPem: rogueLeaf.keyPem },
    forgedCaPem,
  })
}

/** Lowercase hex of a PEM certificate's subjectKeyIdentifier extension, `undefined` when it has none. */
export function subjectKeyIdentifierHex (certPem: string): string | undefined {
  const extension = forge.pki.certificateFromPem(certPem).getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined
  return extension?.subjectKeyIdentifier?.toLowerCase()
}

/** The bytes (forge binary string) of a certificate's subjectKeyIdentifier, or of its key's SHA-1 when it has none. */
function keyIdentifierBytes (cert: forge.pki.Certificate): string {
  const extension = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined
  const hex = extension?.subjectKeyIdentifier
  return hex === undefined ? cert.generateSubjectKeyIdentifier().getBytes() : forge.util.hexToBytes(hex)
}

async function signLeaf (issuer: forge.pki.CertificateField[], authorityKeyId: string, signingKey: forge.pki.rsa.PrivateKey, hosts: string[]): Promise<CertificateAndKey> {
  const keys = await generateKeyPair()
  const cert = forge.pki.createCertificate()
  cert.publicKey = keys.publicKey
  cert.serialNumber = serial()
  setValidity(cert)
  cert.setSubject([{ name: 'commonName', value: hosts[0] ?? 'mitm' }])
  cert.setIssuer(issuer)
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: hosts.map((host) => /^[\d.]+$|:/.test(host) ? { type: 7, ip: host } : { type: 2, value: host }) },
    { name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId },
  ])
  cert.sign(signingKey, forge.md.sha256.create())
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) }
}

function octetString (bytes: string): forge.asn1.Asn1 {
  return forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, bytes)
}

function setValidity (cert: forge.pki.Certificate): void {
  const now = Date.now()
  cert.validity.notBefore = new Date(now - 3_600_000)
  cert.validity.notAfter = new Date(now + 7 * 86_400_000)
}

function serial (): string {
  // Positive: a leading 0 nibble keeps the DER INTEGER from reading as negative.
  return `0${randomBytes(15).toString('hex')}`
}

async function generateKeyPair (): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    // The callback form runs Node's native keygen instead of forge's JS prime search.
    forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 }, (err, keypair) => {
      if (err !== null && err !== undefined) reject(err)
      else resolve(keypair)
    })
  })
}
