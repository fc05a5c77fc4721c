import type { Logger } from 'pino'
import { AuthError } from '@spokelink/auth'
import { CERTIFICATE_MESSAGE_MAX_BYTES, encodeFramedJson, parseCertificateRequest, readFramedJson } from '@spokelink/protocol'
import type { CertificateResponse, MuxStream } from '@spokelink/protocol'

/** Certificate requests one session may make; a bootstrap and a renewal or two are all an honest agent needs. */
export const MAX_CERTIFICATE_REQUESTS_PER_SESSION = 4

/**
 * Answers certificate requests on a session's control stream, one at a time, until the stream ends. Each request is
 * handed to `issue`; its refusals (a second bootstrap, an invalid CSR) are answered with their code and message, and
 * anything else with a generic refusal (the cause is logged, not sent). After
 * {@link MAX_CERTIFICATE_REQUESTS_PER_SESSION} requests the rest are refused without work.
 */
export async function serveCertificateRequests (
  control: MuxStream,
  issue: (csrPem: string) => Promise<{ certPem: string, serial: string, notAfter: Date }>,
  log: Logger
): Promise<void> {
  let served = 0
  for (;;) {
    let value: unknown
    try {
      value = await readFramedJson(control, { maxBytes: CERTIFICATE_MESSAGE_MAX_BYTES })
    } catch {
      return // the stream ended with the session, or sent garbage: nothing more to answer
    }
    let response: CertificateResponse
    if (++served > MAX_CERTIFICATE_REQUESTS_PER_SESSION) {
      response = { type: 'certificate-refused', code: 'SLK_ERR_EXIT_CERT_REQUESTS', error: `at most ${MAX_CERTIFICATE_REQUESTS_PER_SESSION} certificate requests per session` }
    } else {
      try {
        const request = parseCertificateRequest(value)
        const issued = await issue(request.csrPem)
        response = { type: 'certificate', certPem: issued.certPem, serial: issued.serial, notAfter: issued.notAfter.toISOString() }
        log.info({ serial: issued.serial, notAfter: response.notAfter }, 'client certificate issued')
      } catch (err) {
        const code = err instanceof AuthError ? err.code : 'SLK_ERR_EXIT_CERT_ISSUE'
        const error = err instanceof AuthError ? err.message : 'the exit-node could not issue a certificate (see its log)'
        log.warn({ err, code }, 'client certificate refused')
        response = { type: 'certificate-refused', code, error }
      }
    }
    if (control.destroyed || control.writableEnded) return
    control.write(encodeFramedJson(response))
  }
}
