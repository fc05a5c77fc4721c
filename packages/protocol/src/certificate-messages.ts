import { ProtocolError } from './errors.js'

/**
 * Agent → exit-node on the control stream, after the welcome: a PKCS#10 request for the agent's own key. Sent only
 * when the welcome said `clientCert: 'required'`, so an exit-node that predates it never sees one (and one that did
 * would ignore it: the control stream's bytes after the hello were discarded).
 */
export interface CertificateRequest {
  type: 'certificate-request'
  csrPem: string
}

/** Exit-node → agent: the answer to a {@link CertificateRequest}. */
export type CertificateResponse =
  | { type: 'certificate', certPem: string, serial: string, notAfter: string }
  | { type: 'certificate-refused', code: string, error: string }

/** Largest control message carrying a certificate or request; a 2048-bit request or certificate is ~1.5 KiB of PEM. */
export const CERTIFICATE_MESSAGE_MAX_BYTES = 8192

function invalid (what: string): ProtocolError {
  return new ProtocolError('SLK_ERR_PROTO_HEADER_INVALID', `peer sent an invalid ${what}`)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Validates a certificate request read from the control stream.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_INVALID
 */
export function parseCertificateRequest (value: unknown): CertificateRequest {
  if (!isRecord(value) || value.type !== 'certificate-request' || typeof value.csrPem !== 'string' || value.csrPem.length > CERTIFICATE_MESSAGE_MAX_BYTES) {
    throw invalid('certificate request')
  }
  return { type: 'certificate-request', csrPem: value.csrPem }
}

/**
 * Validates a certificate response read from the control stream.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_INVALID
 */
export function parseCertificateResponse (value: unknown): CertificateResponse {
  if (!isRecord(value)) throw invalid('certificate response')
  if (value.type === 'certificate-refused' && typeof value.code === 'string' && typeof value.error === 'string') {
    return { type: 'certificate-refused', code: value.code.slice(0, 64), error: value.error.slice(0, 512) }
  }
  if (value.type === 'certificate' && typeof value.certPem === 'string' && typeof value.serial === 'string' && typeof value.notAfter === 'string') {
    return { type: 'certificate', certPem: value.certPem, serial: value.serial, notAfter: value.notAfter }
  }
  throw invalid('certificate response')
}
