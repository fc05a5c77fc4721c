import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { AuthError } from './errors.js'
import type { SpokeConfig, SpokesConfig, TokenEntry } from './spokes-config.js'
import { isSha256Hex } from './sha256-hex.js'

/** Prefix of every spoke token. */
export const SPOKE_TOKEN_PREFIX = 'slk_'

/** Length of the id of a token made by {@link createSpokeToken}. */
export const SPOKE_TOKEN_ID_LENGTH = 8

/** Random bytes in the secret of a token made by {@link createSpokeToken} (256 bits). */
export const SPOKE_TOKEN_SECRET_BYTES = 32

/**
 * Token ids accepted when parsing a token or a spokes file: lowercase alphanumerics, 4–32 characters.
 * Generated ids are 8 characters of lowercase RFC 4648 base32; hand-written ids (as in DESIGN's `8f3k2a`) are allowed.
 */
export const SPOKE_TOKEN_ID_PATTERN = /^[a-z0-9]{4,32}$/

// ≥ 22 base64url characters carry ≥ 128 bits; the upper bound keeps hashing of hostile input cheap.
const SECRET_PATTERN = /^[A-Za-z0-9_-]{22,128}$/
const MAX_TOKEN_LENGTH = SPOKE_TOKEN_PREFIX.length + 32 + 1 + 128
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

/** The two parts of a spoke token. */
export interface ParsedSpokeToken {
  /** The token id. */
  id: string
  /** The secret part (base64url). Never log it. */
  secret: string
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

/** Tells whether `s` has the shape of a spoke token `slk_<id>_<secret>` (it does not check that it is valid). */
export function isSpokeToken (s: unknown): boolean {
  return typeof s === 'string' && tryParseSpokeToken(s) !== undefined
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
  if (expires !== undefined && now.getTime() >= expires.getTime()) {
    throw new AuthError('SLK_ERR_AUTH_TOKEN_EXPIRED', `spoke token ${id} of spoke ${found.spoke.name} expired at ${expires.toISOString()}; create a new one with "spokelink token create"`)
  }
  return { spoke: found.spoke, tokenId: id, sha256: actual.toString('hex') }
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

function tryParseSpokeToken (token: string): ParsedSpokeToken | undefined {
  if (token.length > MAX_TOKEN_LENGTH || !token.startsWith(SPOKE_TOKEN_PREFIX)) return undefined
  const rest = token.slice(SPOKE_TOKEN_PREFIX.length)
  const sep = rest.indexOf('_')
  if (sep < 0) return undefined
  const id = rest.slice(0, sep)
  const secret = rest.slice(sep + 1)
  if (!SPOKE_TOKEN_ID_PATTERN.test(id) || !SECRET_PATTERN.test(secret)) return undefined
  return { id, secret }
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
