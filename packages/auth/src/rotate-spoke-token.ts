import { ConfigError } from './errors.js'
import { parseSpokesConfig } from './spokes-config.js'
import type { TokenEntry } from './spokes-config.js'
import { addSpokeToken, setSpokeTokenExpiry } from './spokes-file-editor.js'

/** Outcome of {@link rotateSpokeToken}. */
export interface SpokeTokenRotation {
  /** The new spokes file text. */
  text: string
  /** Ids of the spoke's older tokens whose expiry was brought forward to the end of the overlap. */
  shortened: string[]
  /** Ids of older tokens left as they were: already revoked, or already expiring at or before the end of the overlap. */
  unchanged: string[]
}

/**
 * Rotation as one edit of the spokes file text: adds `entry` to spoke `spokeName` and gives every other live token of
 * that spoke `expires: oldTokensExpire` (the end of the overlap). An expiry is only ever brought forward, never pushed
 * back, so rotating twice cannot extend a token, and a revoked token stays revoked. The exit-node then refuses the
 * old tokens at `oldTokensExpire` and its revalidation tick closes their sessions.
 * @throws {ConfigError} as `addSpokeToken` and `setSpokeTokenExpiry`; `SLK_ERR_CONFIG_SPOKES_FILE` when
 * `oldTokensExpire` is not a valid date
 */
export function rotateSpokeToken (text: string, spokeName: string, entry: TokenEntry, oldTokensExpire: Date, source = 'spokes file'): SpokeTokenRotation {
  if (Number.isNaN(oldTokensExpire.getTime())) throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: rotation: the overlap's end is not a valid date`)
  const before = parseSpokesConfig(text, source).spokes.find((spoke) => spoke.name === spokeName)
  let next = addSpokeToken(text, spokeName, entry, source) // throws SLK_ERR_CONFIG_UNKNOWN_SPOKE when absent
  const shortened: string[] = []
  const unchanged: string[] = []
  for (const token of before?.tokens ?? []) {
    if (token.revoked === true || (token.expires !== undefined && token.expires.getTime() <= oldTokensExpire.getTime())) {
      unchanged.push(token.id)
      continue
    }
    next = setSpokeTokenExpiry(next, token.id, oldTokensExpire, source)
    shortened.push(token.id)
  }
  return { text: next, shortened, unchanged }
}
