import { X509Certificate } from 'node:crypto'
import { chmod, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createCertificateRequest, createClientKey, writeFileAtomic } from '@spokelink/auth'
import { CERTIFICATE_MESSAGE_MAX_BYTES, parseCertificateResponse, readFramedJson, writeFramedJson } from '@spokelink/protocol'
import type { CertificateResponse, MuxStream } from '@spokelink/protocol'
import { AgentError } from './errors.js'

/** Files of the agent's `--state-dir`. */
export const STATE_DIR_FILES = {
  key: 'client.key',
  cert: 'client.crt',
} as const

/**
 * The agent's client identity for spokes with `requireClientCert`, kept in its state directory (0700, files 0600):
 * a private key made here on first use (it never leaves the spoke: only a CSR is sent), and the certificate the
 * exit-node issued for it, once there is one.
 */
export class ClientIdentity {
  readonly #dir: string
  readonly #keyPem: string
  #certPem: string | undefined
  #notAfterMs: number | undefined

  private constructor (dir: string, keyPem: string, certPem: string | undefined) {
    this.#dir = dir
    this.#keyPem = keyPem
    this.#setCertificate(certPem)
  }

  /**
   * Opens (creating when needed) the state directory: reads the key or makes one, and reads the certificate if any.
   * @throws AgentError `SLK_ERR_AGENT_STATE_DIR` when the directory or its files cannot be read or written
   */
  static async open (dir: string): Promise<ClientIdentity> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      await chmod(dir, 0o700)
      const keyPath = join(dir, STATE_DIR_FILES.key)
      let keyPem = await readFile(keyPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined
        throw err
      })
      if (keyPem === undefined) {
        keyPem = createClientKey()
        await writeFileAtomic(keyPath, keyPem, { mode: 0o600 })
      }
      const certPem = await readFile(join(dir, STATE_DIR_FILES.cert), 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined
        throw err
      })
      return new ClientIdentity(dir, keyPem, certPem)
    } catch (err) {
      const code = err instanceof Error && 'code' in err ? String(err.code) : 'unusable'
      throw new AgentError('SLK_ERR_AGENT_STATE_DIR', `--state-dir ${dir}: cannot read or write the client key and certificate (${code})`, { cause: err })
    }
  }

  /** Key and certificate to present in the TLS handshake, once a certificate was issued. */
  get tls (): { certPem: string, keyPem: string } | undefined {
    return this.#certPem === undefined ? undefined : { certPem: this.#certPem, keyPem: this.#keyPem }
  }

  /** When the held certificate expires (ms since the epoch), or undefined without one. */
  get notAfterMs (): number | undefined {
    return this.#notAfterMs
  }

  /** Whether to ask for a certificate now: none yet, or less than `renewBeforeMs` left at `nowMs`. */
  needsCertificate (nowMs: number, renewBeforeMs: number): boolean {
    return this.#notAfterMs === undefined || this.#notAfterMs - nowMs < renewBeforeMs
  }

  /**
   * Sends a CSR for the key on the session's control stream and waits for the answer; an issued certificate is
   * stored (atomically, 0600) and used from the next connect on.
   * @throws AgentError `SLK_ERR_AGENT_CERT_REFUSED` with the exit-node's reason, `SLK_ERR_AGENT_CERT_TIMEOUT`
   */
  async request (control: MuxStream, subject: { spoke: string, tokenId: string }, timeoutMs: number): Promise<Extract<CertificateResponse, { type: 'certificate' }>> {
    writeFramedJson(control, { type: 'certificate-request', csrPem: createCertificateRequest(this.#keyPem, subject) })
    let response: CertificateResponse
    try {
      response = parseCertificateResponse(await readFramedJson(control, { maxBytes: CERTIFICATE_MESSAGE_MAX_BYTES, signal: AbortSignal.timeout(timeoutMs) }))
    } catch (err) {
      throw new AgentError('SLK_ERR_AGENT_CERT_TIMEOUT', `no certificate from the exit-node within ${timeoutMs} ms`, { cause: err })
    }
    if (response.type === 'certificate-refused') throw new AgentError('SLK_ERR_AGENT_CERT_REFUSED', `exit-node refused the certificate request: ${response.code}: ${response.error}`)
    await writeFileAtomic(join(this.#dir, STATE_DIR_FILES.cert), response.certPem, { mode: 0o600 })
    this.#setCertificate(response.certPem)
    return response
  }

  #setCertificate (certPem: string | undefined): void {
    this.#certPem = certPem
    this.#notAfterMs = certPem === undefined ? undefined : new Date(new X509Certificate(certPem).validTo).getTime()
  }
}
