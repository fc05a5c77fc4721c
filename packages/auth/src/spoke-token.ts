import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { AuthError } from './errors.js'
import type { SpokeConfig, SpokesConfig, TokenEntry } from './spokes-config.js'
import { isSha256Hex } from './sha256-hex.js'
import { SPOKE_TOKEN_PREFIX, SPOKE_TOKEN_SECRET_BYTES, tryParseSpokeToken } from './spoke-token-format.js'
import type { ParsedSpokeToken } from './spoke-token-format.js'

const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

/** A freshly created spoke token. `token` is the secret to hand to the agent; only `id` and `sha256` are stored. */
export interface CreatedSpokeToken {
  /** The full `slk_<id>_<secret>` token. Secret: never log or store it. */
  token: string
  /** The token id, used for lookup and in logs. */
  id: string
  /** Lowercase hex sha256 of the secret part, as stored in the spokes file. */
  sha256: string
}

/** The spoke a token authenticated, and the id of the token used. */
export interface VerifiedSpokeToken {
  /** The spoke whose token entry matched. */
  spoke: SpokeConfig
  /** The id of the matching token (safe to log). */
  tokenId: string
  /**
   * sha256 (lowercase hex) of the secret that matched: the credential this authentication rests on. A session keeps
   * it so that a later change of the entry's hash (same id, new secret) ends the session like a revocation.
   */
  sha256: string
}

/**
 * Creates a new random spoke token `slk_<id>_<secret>`: an 8-character base32 id and 32 random bytes of
 * base64url secret.
 */
export function createSpokeToken (): CreatedSpokeToken {
  const id = encodeBase32(randomBytes(5)) // 40 bits = exactly 8 base32 characters
  const secret = randomBytes(SPOKE_TOKEN_SECRET_BYTES).toString('base64url')
  return { token: `${SPOKE_TOKEN_PREFIX}${id}_${secret}`, id, sha256: hashTokenSecret(secret) }
}

/**
 * Splits a spoke token into id and secret. The secret may itself contain `_` and `-` (base64url), so only the
 * prefix and the first `_` after the id separate the parts.
 * @throws {AuthError} `SLK_ERR_AUTH_TOKEN_MALFORMED` when the string is not a spoke token (the message never
 * repeats the input).
 */
export function parseSpokeToken (token: string): ParsedSpokeToken {
  const parsed = tryParseSpokeToken(token)
  if (parsed === undefined) {
    throw new AuthError('SLK_ERR_AUTH_TOKEN_MALFORMED', 'spoke token is malformed: expected "slk_<id>_<secret>" with a 4-32 character lowercase id and a base64url secret of at least 22 characters')
  }
  return parsed
}

/** Hashes the secret part of a spoke token: lowercase hex sha256 of its UTF-8 bytes, as stored in the spokes file. */
export function hashTokenSecret (secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex')
}

/**
 * Verifies a spoke token against the spokes file: looks the id up, compares sha256 of the secret in constant time,
 * then checks revocation and expiry (in that order, and only once the secret matched, so an attacker learns
 * nothing about a token whose secret it does not know).
 *
 * Configs returned by `parseSpokesConfig` are frozen, and for those the id index is built once and cached;
 * other configs are scanned on each call.
 * @param now - the current time (injected so expiry is testable)
 * @throws {AuthError} `SLK_ERR_AUTH_TOKEN_MALFORMED` (not a token), `SLK_ERR_AUTH_TOKEN_INVALID` (unknown id or
 * wrong secret), `SLK_ERR_AUTH_TOKEN_REVOKED` (entry has `revoked: true`), `SLK_ERR_AUTH_TOKEN_EXPIRED`
 * (`expires` is at or before `now`)
 */
export function verifySpokeToken (token: string, spokes: SpokesConfig, now: Date): VerifiedSpokeToken {
  const { id, secret } = parseSpokeToken(token)
  const found = lookupToken(spokes, id)
  const actual = createHash('sha256').update(secret, 'utf8').digest()
  const expected = found !== undefined && isSha256Hex(found.entry.sha256)
    ? Buffer.from(found.entry.sha256, 'hex')
    : DUMMY_DIGEST // compare anyway, so an unknown id costs the same as a wrong secret
  const matches = timingSafeEqual(actual, expected)
  if (found === undefined || !matches) {
    throw new AuthError('SLK_ERR_AUTH_TOKEN_INVALID', `spoke token ${id} is not valid: unknown id or wrong secret`)
  }
  if (found.entry.revoked === true) {
    throw new AuthError('SLK_ERR_AUTH_TOKEN_REVOKED', `spoke token ${id} of spoke ${found.spoke.name} has been revoked`)
  }
  const expires = found.entry.expires
  if (expires !== undefined && isTokenExpired(found.entry, now)) {
    throw new AuthError('SLK_ERR_AUTH_TOKEN_EXPIRED', `spoke token ${id} of spoke ${found.spoke.name} expired at ${expires.toISOString()}; create a new one with "spokelink token create"`)
  }
  return { spoke: found.spoke, tokenId: id, sha256: actual.toString('hex') }
}

/** Whether a token entry's `expires` is at or before `now`: the one expiry rule, at the upgrade and for live sessions. */
function isTokenExpired (entry: TokenEntry, now: Date): boolean {
  return entry.expires !== undefined && entry.expires.getTime() <= now.getTime()
}

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
 * revoked or expired, the token id moved to another spoke, its hash changed (a new secret under the same id), or the
 * session's client certificate (or the token's current one) revoked.
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
  if (isTokenExpired(token, now)) return 'token expired'
  // The session's own certificate, or the token's current one (renewed on this session), revoked.
  const revokedSerials = entry.revokedSerials ?? []
  if (credential.certSerial !== undefined && revokedSerials.includes(credential.certSerial)) return 'certificate revoked'
  if (token.certSerial !== undefined && revokedSerials.includes(token.certSerial)) return 'certificate revoked'
  return undefined
}

interface TokenLocation { spoke: SpokeConfig, entry: TokenEntry }

const DUMMY_DIGEST = Buffer.alloc(32)
const indexCache = new WeakMap<SpokesConfig, Map<string, TokenLocation>>()

function lookupToken (config: SpokesConfig, id: string): TokenLocation | undefined {
  const cached = indexCache.get(config)
  if (cached !== undefined) return cached.get(id)
  if (!Object.isFrozen(config)) return buildIndex(config).get(id)
  const index = buildIndex(config)
  indexCache.set(config, index)
  return index.get(id)
}

function buildIndex (config: SpokesConfig): Map<string, TokenLocation> {
  const index = new Map<string, TokenLocation>()
  for (const spoke of config.spokes) {
    for (const entry of spoke.tokens) {
      // First one wins; parseSpokesConfig rejects duplicate ids, so this only matters for hand-built configs.
      if (!index.has(entry.id)) index.set(entry.id, { spoke, entry })
    }
  }
  return index
}

function encodeBase32 (bytes: Buffer): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32_ALPHABET.charAt((value >>> (bits - 5)) & 31)
      bits -= 5
    }
    value &= (1 << bits) - 1
  }
  if (bits > 0) out += BASE32_ALPHABET.charAt((value << (5 - bits)) & 31)
  return out
}
