import type { SpokesConfig } from '@spokelink/auth'

/** The credential a session authenticated with: which token, of which spoke, and the hash it matched. */
export interface SessionCredential {
  spoke: string
  tokenId: string
  /** sha256 (lowercase hex) of the secret the agent presented. */
  tokenSha256: string
  /** Serial of the client certificate the session was opened with, if any. */
  certSerial?: string
}

/**
 * Why a session authenticated with `credential` may no longer live under `spokes`, or undefined when it still may.
 * Any change that would refuse the same credential at the upgrade ends the session: spoke removed, token removed or
 * revoked or expired, the token id moved to another spoke, or its hash changed (a new secret under the same id).
 * Used after every spokes-file reload and on the expiry tick.
 */
export function sessionRevocationReason (spokes: SpokesConfig, credential: SessionCredential, now: Date): string | undefined {
  const { spoke, tokenId, tokenSha256 } = credential
  const entry = spokes.spokes.find((candidate) => candidate.name === spoke)
  if (entry === undefined) return 'spoke removed'
  const token = entry.tokens.find((candidate) => candidate.id === tokenId)
  if (token === undefined) {
    const moved = spokes.spokes.some((candidate) => candidate.tokens.some((t) => t.id === tokenId))
    return moved ? 'token moved to another spoke' : 'token revoked'
  }
  if (token.revoked === true) return 'token revoked'
  if (token.sha256.toLowerCase() !== tokenSha256) return 'token hash changed'
  if (token.expires !== undefined && token.expires.getTime() <= now.getTime()) return 'token expired'
  // The session's own certificate, or the token's current one (renewed on this session), revoked.
  const revokedSerials = entry.revokedSerials ?? []
  if (credential.certSerial !== undefined && revokedSerials.includes(credential.certSerial)) return 'certificate revoked'
  if (token.certSerial !== undefined && revokedSerials.includes(token.certSerial)) return 'certificate revoked'
  return undefined
}
