import { X509Certificate } from 'node:crypto'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import {
  AuthError,
  CLIENT_CERT_DEFAULTS,
  editSpokesFile,
  parseSpokesConfig,
  readClientCertificate,
  recordClientCertificate,
  signClientCertificate,
} from '@spokelink/auth'
import type { SpokeConfig, SpokesConfig, SpokesFileLockOptions, TokenEntry } from '@spokelink/auth'

/** Options of {@link ClientCertificateAuthority}. */
export interface ClientCertificateAuthorityOptions {
  /** The CA that signs client certificates (the `--auto-tls` CA, or `--client-ca-cert`/`--client-ca-key`). */
  caCertPem: string
  /** Its private key. Secret. */
  caKeyPem: string
  /** The spokes file, where each issued serial is recorded (`certSerial`) under its lock. */
  spokesPath: string
  /** Lifetime of an issued certificate. @default 7 days */
  lifetimeMs?: number
  /** Lock options of the spokes-file edit. */
  lock?: SpokesFileLockOptions
}

/** What the client certificate check of one `/connect` decided. */
export type ClientCertificateCheck =
  | { ok: true, certSerial?: string }
  | { ok: false, status: 403, reason: string, metricReason: string }

/** An issued certificate and the spokes config that now records it. */
export interface IssuedClientCertificate {
  certPem: string
  serial: string
  notAfter: Date
  spokes: SpokesConfig
}

/**
 * Client certificates for spokes with `requireClientCert`: checks what an agent presents at `/connect`, and issues
 * (bootstrap) or renews certificates for a session's CSR. The TLS server asks for a certificate without requiring
 * one (`requestCert`, not `rejectUnauthorized`), so the check here decides with reasons the agent is told (403).
 */
export class ClientCertificateAuthority {
  readonly #options: Required<Omit<ClientCertificateAuthorityOptions, 'lock'>> & Pick<ClientCertificateAuthorityOptions, 'lock'>

  constructor (options: ClientCertificateAuthorityOptions) {
    // Fail at start, not at the first CSR, when the CA is unusable.
    readClientCertificateAuthority(options.caCertPem)
    this.#options = { lifetimeMs: CLIENT_CERT_DEFAULTS.lifetimeMs, ...options }
  }

  /** The certificate lifetime issued. */
  get lifetimeMs (): number {
    return this.#options.lifetimeMs
  }

  /**
   * Decides a `/connect` of `spoke` with token `token` (already verified) on `socket`. Spokes without
   * `requireClientCert` pass whatever is presented. Otherwise: no certificate passes only while the token has not
   * bootstrapped one; a presented certificate must be signed by the CA, name this spoke and token, be within its
   * validity at `now`, not be revoked, and be the token's current one.
   */
  check (socket: Socket, spoke: SpokeConfig, token: TokenEntry, now: Date): ClientCertificateCheck {
    if (spoke.requireClientCert !== true) return { ok: true }
    const refuse = (reason: string, metricReason: string): ClientCertificateCheck => ({ ok: false, status: 403, reason, metricReason })
    const raw = 'getPeerCertificate' in socket ? (socket as TLSSocket).getPeerCertificate().raw as Buffer | undefined : undefined
    if (raw === undefined) {
      if (token.certSerial === undefined) return { ok: true }
      return refuse('client certificate required: this token already bootstrapped one, connect with it (the key stays in the agent\'s --state-dir)', 'cert_required')
    }
    let identity
    try {
      identity = readClientCertificate(raw, this.#options.caCertPem)
    } catch (err) {
      return refuse(err instanceof AuthError ? err.message : 'client certificate is not readable', 'cert_invalid')
    }
    if (identity.spoke !== spoke.name || identity.tokenId !== token.id) return refuse('client certificate was issued for another spoke or token', 'cert_mismatch')
    if (now.getTime() >= identity.notAfter.getTime() || now.getTime() < identity.notBefore.getTime()) return refuse('client certificate expired or not yet valid', 'cert_expired')
    if (spoke.revokedSerials?.includes(identity.serial) === true) return refuse('client certificate revoked', 'cert_revoked')
    if (identity.serial !== token.certSerial) return refuse('client certificate was renewed or replaced; connect with the current one', 'cert_superseded')
    return { ok: true, certSerial: identity.serial }
  }

  /**
   * Signs a certificate for `csrPem` and records its serial on the token in the spokes file (under the lock, as a
   * compare-and-swap from `currentSerial`: undefined for a bootstrap, the session's serial for a renewal).
   * @throws AuthError `SLK_ERR_AUTH_CSR_INVALID`, `SLK_ERR_AUTH_CERT_BOOTSTRAPPED`; the spokes-file edit's errors
   */
  async issue (session: { spoke: string, tokenId: string, certSerial?: string | undefined }, csrPem: string, now: Date): Promise<IssuedClientCertificate> {
    const signed = signClientCertificate({ certPem: this.#options.caCertPem, keyPem: this.#options.caKeyPem }, csrPem, {
      spoke: session.spoke,
      tokenId: session.tokenId,
      now,
      lifetimeMs: this.#options.lifetimeMs,
    })
    const path = this.#options.spokesPath
    const edit = await editSpokesFile(path, (text) => recordClientCertificate(text, session.tokenId, signed.serial, session.certSerial, path), this.#options.lock)
    return { ...signed, spokes: parseSpokesConfig(edit.after, path) }
  }
}

function readClientCertificateAuthority (caCertPem: string): void {
  try {
    if (!new X509Certificate(caCertPem).ca) throw new Error('not a CA certificate')
  } catch (err) {
    throw new AuthError('SLK_ERR_AUTH_TLS', 'client CA certificate is not a readable CA certificate', { cause: err })
  }
}
