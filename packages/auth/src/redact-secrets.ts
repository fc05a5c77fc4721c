import { JOIN_TOKEN_PREFIX } from './join-token.js'

/** What replaces the secret part of a value {@link redactSecrets} hides. */
export const REDACTED_MARK = '…(redacted)'

/** Characters kept from a long random-looking run: enough to recognise it, far too few to use it. */
const KEPT_PREFIX_CHARS = 4
/** A run this long could be a bare secret (spoke token secrets are ≥ 22 base64url characters). */
const MIN_SECRET_RUN_CHARS = 22
/** Default longest quoted value, after redaction, in an error message. */
const MAX_QUOTED_CHARS = 100

// One pass, each candidate starting where a base64url run starts: a join token, a spoke token, or a long run.
const CANDIDATE = /(?<![A-Za-z0-9_-])(?:slkj1\.[A-Za-z0-9_-]*|slk_[a-z0-9]{4,32}_[A-Za-z0-9_-]*|[A-Za-z0-9_-]{22,})/g
const SPOKE_TOKEN_HEAD = /^slk_([a-z0-9]{4,32})_/

/** Each case makes at least this share of a run's letters in random base64url; camelCase names fall far below. */
const MIN_CASE_SHARE = 0.2

// About 1 secret in 150 has no digit, so digits alone cannot decide: a digit-free run counts when both cases are
// well mixed (random text: ~50/50; `maxConnectionsPerHubService`: 15 % upper).
function looksRandom (run: string): boolean {
  if (run.length < MIN_SECRET_RUN_CHARS) return false
  const upper = run.replace(/[^A-Z]/g, '').length
  const lower = run.replace(/[^a-z]/g, '').length
  if (upper === 0 || lower === 0) return false
  if (/[0-9]/.test(run)) return true
  const letters = upper + lower
  return upper >= letters * MIN_CASE_SHARE && lower >= letters * MIN_CASE_SHARE
}

/**
 * Replaces every secret-shaped part of `text` with a prefix that is safe to print: spoke tokens keep their id
 * (`slk_8f3k2a_…(redacted)`), join tokens their prefix (`slkj1.…(redacted)`), and long random-looking base64url runs
 * (both cases with digits, or both cases well mixed; ≥ 22 characters, e.g. a bare secret) their first 4 characters. Hex digests, names, paths
 * and URLs without such runs pass unchanged. For error messages that quote user input.
 */
export function redactSecrets (text: string): string {
  return text.replace(CANDIDATE, (match) => {
    if (match.startsWith(JOIN_TOKEN_PREFIX)) return `${JOIN_TOKEN_PREFIX}${REDACTED_MARK}`
    const id = SPOKE_TOKEN_HEAD.exec(match)?.[1]
    if (id !== undefined) return `slk_${id}_${REDACTED_MARK}`
    if (looksRandom(match) || match.includes('slk_')) return `${match.slice(0, KEPT_PREFIX_CHARS)}${REDACTED_MARK}`
    return match
  })
}

/**
 * Quotes a user-supplied value for an error message: secrets redacted as by {@link redactSecrets}, then cut to
 * `maxChars`, then JSON-quoted (`"slk_8f3k2a_…(redacted)"`).
 */
export function quoteValue (value: unknown, maxChars = MAX_QUOTED_CHARS): string {
  const text = redactSecrets(typeof value === 'string' ? value : String(JSON.stringify(value)))
  return JSON.stringify(text.length > maxChars ? `${text.slice(0, maxChars)}…` : text)
}
