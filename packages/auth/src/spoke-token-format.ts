/*
 * The shape of a spoke token `slk_<id>_<secret>`, with no imports: the spokes-file parser checks ids with it
 * and spoke-token.ts (which reads the spokes-file types) builds on it, so neither imports the other.
 */

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
/** The two parts of a spoke token. */
export interface ParsedSpokeToken {
  /** The token id. */
  id: string
  /** The secret part (base64url). Never log it. */
  secret: string
}

/** Tells whether `s` has the shape of a spoke token `slk_<id>_<secret>` (it does not check that it is valid). */
export function isSpokeToken (s: unknown): boolean {
  return typeof s === 'string' && tryParseSpokeToken(s) !== undefined
}

/** Splits a token into id and secret, or `undefined` when it does not have the shape. */
export function tryParseSpokeToken (token: string): ParsedSpokeToken | undefined {
  if (token.length > MAX_TOKEN_LENGTH || !token.startsWith(SPOKE_TOKEN_PREFIX)) return undefined
  const rest = token.slice(SPOKE_TOKEN_PREFIX.length)
  const sep = rest.indexOf('_')
  if (sep < 0) return undefined
  const id = rest.slice(0, sep)
  const secret = rest.slice(sep + 1)
  if (!SPOKE_TOKEN_ID_PATTERN.test(id) || !SECRET_PATTERN.test(secret)) return undefined
  return { id, secret }
}
