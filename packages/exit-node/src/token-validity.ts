import type { SpokesConfig } from '@spokelink/auth'

/**
 * Why a session authenticated with `tokenId` for `spoke` may no longer live under `spokes`, or
 * undefined when it still may. Used after every spokes-file reload and on the expiry tick.
 */
export function sessionRevocationReason (spokes: SpokesConfig, spoke: string, tokenId: string, now: Date): string | undefined {
  const entry = spokes.spokes.find((candidate) => candidate.name === spoke)
  if (entry === undefined) return 'spoke removed'
  const token = entry.tokens.find((candidate) => candidate.id === tokenId)
  if (token === undefined || token.revoked === true) return 'token revoked'
  if (token.expires !== undefined && token.expires.getTime() <= now.getTime()) return 'token expired'
  return undefined
}
