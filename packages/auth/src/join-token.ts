import { AuthError } from './errors.js'
import { isSpokeToken } from './spoke-token-format.js'
import { isSha256Hex } from './sha256-hex.js'

/** Prefix (with format version) of every join token. */
export const JOIN_TOKEN_PREFIX = 'slkj1.'

/** What a join token carries: where to connect, which CA to pin, and the spoke token. */
export interface JoinToken {
  /** The exit-node's `ws://` or `wss://` URL (e.g. `wss://hub.example.com/connect`). */
  server: string
  /**
   * Lowercase hex sha256 of the exit-node CA certificate's DER (see `certificateSha256`); when set, the agent trusts
   * exactly that CA.
   */
  caSha256?: string
  /** The spoke token `slk_<id>_<secret>`. Secret. */
  token: string
}

const MAX_JOIN_TOKEN_LENGTH = 4096
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]+$/
const KEYS = new Set(['server', 'caSha256', 'token'])

/**
 * Encodes a join token `slkj1.<base64url(JSON{server, caSha256?, token})>`. `caSha256` is lowercased.
 * @throws {AuthError} `SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED` when a field is invalid (same rules as {@link decodeJoinToken})
 */
export function encodeJoinToken (join: JoinToken): string {
  const valid = validateJoinToken(join)
  return JOIN_TOKEN_PREFIX + Buffer.from(JSON.stringify(valid), 'utf8').toString('base64url')
}

/**
 * Decodes and validates a join token: `server` must be a `ws://` or `wss://` URL without credentials, `caSha256`
 * (optional) 64 hex digits, `token` a well-formed spoke token; no other fields.
 * @throws {AuthError} `SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED`; the message never repeats the input
 */
export function decodeJoinToken (s: string): JoinToken {
  if (typeof s !== 'string' || !s.startsWith(JOIN_TOKEN_PREFIX)) {
    throw malformed(`expected a string starting with "${JOIN_TOKEN_PREFIX}"`)
  }
  if (s.length > MAX_JOIN_TOKEN_LENGTH) throw malformed(`longer than ${MAX_JOIN_TOKEN_LENGTH} characters`)
  const body = s.slice(JOIN_TOKEN_PREFIX.length)
  // Buffer's base64url decoder skips bad characters silently, so check the alphabet first.
  if (!BASE64URL_PATTERN.test(body)) throw malformed('the part after the prefix is not base64url')
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    // No cause: JSON.parse's message quotes the payload, which holds the secret.
    throw malformed('the payload is not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed('the payload is not a JSON object')
  for (const key of Object.keys(value)) {
    if (!KEYS.has(key)) throw malformed('the payload has an unknown field (expected server, caSha256, token)')
  }
  const record = value as Record<string, unknown>
  const { server, caSha256, token } = record
  if (typeof server !== 'string') throw malformed('"server" is missing or not a string')
  if (typeof token !== 'string') throw malformed('"token" is missing or not a string')
  if (caSha256 !== undefined && typeof caSha256 !== 'string') throw malformed('"caSha256" is not a string')
  return validateJoinToken(caSha256 === undefined ? { server, token } : { server, caSha256, token })
}

function validateJoinToken (join: JoinToken): JoinToken {
  let url: URL
  try {
    url = new URL(join.server)
  } catch {
    // No cause: URL's TypeError carries the input.
    throw malformed('"server" is not a URL (expected ws:// or wss://host[:port]/path)')
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw malformed('"server" must be a ws:// or wss:// URL')
  if (url.username !== '' || url.password !== '') throw malformed('"server" must not contain credentials')
  if (join.caSha256 !== undefined && !isSha256Hex(join.caSha256)) {
    throw malformed('"caSha256" must be 64 hex digits (sha256 of the CA certificate DER)')
  }
  if (!isSpokeToken(join.token)) throw malformed('"token" is not a spoke token (slk_<id>_<secret>)')
  return join.caSha256 === undefined
    ? { server: join.server, token: join.token }
    : { server: join.server, caSha256: join.caSha256.toLowerCase(), token: join.token }
}

function malformed (what: string): AuthError {
  return new AuthError('SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED', `join token is malformed: ${what}`)
}
