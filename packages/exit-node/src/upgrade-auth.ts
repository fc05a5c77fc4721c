import type { IncomingMessage } from 'node:http'
import { AuthError, isSpokeToken, parseSpokeToken, verifySpokeToken } from '@spokelink/auth'
import type { SpokesConfig } from '@spokelink/auth'

/** The outcome of checking a `/connect` request before the WebSocket upgrade. */
export type UpgradeAuthResult =
  | { ok: true, spoke: string, tokenId: string, tokenSha256: string }
  | { ok: false, status: 401 | 403, reason: string, metricReason: string, tokenId?: string }

const BEARER = /^Bearer ([!-~]{1,512})$/

/**
 * Checks the bearer token of an upgrade request against the spokes config.
 * Bad, unknown and malformed tokens get 401; expired and revoked ones 403. Reasons never echo the token.
 */
export function authenticateUpgrade (req: IncomingMessage, spokes: SpokesConfig, now: Date): UpgradeAuthResult {
  const header = req.headers.authorization
  if (header === undefined) return { ok: false, status: 401, reason: 'missing bearer token', metricReason: 'missing' }
  const match = BEARER.exec(header)
  const token = match?.[1]
  if (token === undefined) return { ok: false, status: 401, reason: 'malformed authorization header', metricReason: 'malformed' }
  try {
    const { spoke, tokenId, sha256 } = verifySpokeToken(token, spokes, now)
    return { ok: true, spoke: spoke.name, tokenId, tokenSha256: sha256 }
  } catch (err) {
    if (!(err instanceof AuthError)) throw err
    // The id (4-32 of [a-z0-9], never secret) is what lets an operator tell which token a refused agent holds.
    const tokenId = isSpokeToken(token) ? parseSpokeToken(token).id : undefined
    switch (err.code) {
      case 'SLK_ERR_AUTH_TOKEN_EXPIRED': return { ok: false, status: 403, reason: 'token expired', metricReason: 'expired', tokenId }
      case 'SLK_ERR_AUTH_TOKEN_REVOKED': return { ok: false, status: 403, reason: 'token revoked', metricReason: 'revoked', tokenId }
      case 'SLK_ERR_AUTH_TOKEN_MALFORMED': return { ok: false, status: 401, reason: 'malformed token', metricReason: 'malformed' }
      default: return { ok: false, status: 401, reason: 'invalid token', metricReason: 'invalid', tokenId }
    }
  }
}

/** Whether the request offers the WebSocket subprotocol `name`. */
export function offersSubprotocol (req: IncomingMessage, name: string): boolean {
  const header = req.headers['sec-websocket-protocol']
  if (header === undefined) return false
  return header.split(',').some((offered) => offered.trim() === name)
}
