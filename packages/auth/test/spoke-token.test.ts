import { createHash } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import {
  AuthError,
  createSpokeToken,
  hashTokenSecret,
  isSpokeToken,
  parseSpokeToken,
  verifySpokeToken,
} from '../src/index.js'
import type { SpokesConfig, TokenEntry } from '../src/index.js'

function configWith (entries: Array<{ spoke: string, entry: TokenEntry }>): SpokesConfig {
  const names = [...new Set(entries.map((e) => e.spoke))]
  return {
    spokes: names.map((name) => ({
      name,
      labels: {},
      tokens: entries.filter((e) => e.spoke === name).map((e) => e.entry),
      ports: [],
    })),
  }
}

describe('createSpokeToken', () => {
  test('has the slk_<id>_<secret> shape with an 8-char base32 id and a 32-byte base64url secret', () => {
    const { token, id, sha256 } = createSpokeToken()
    expect(id).toMatch(/^[a-z2-7]{8}$/)
    expect(token.startsWith(`slk_${id}_`)).toBe(true)
    const secret = token.slice(`slk_${id}_`.length)
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32)
    expect(sha256).toBe(createHash('sha256').update(secret).digest('hex'))
    expect(parseSpokeToken(token)).toEqual({ id, secret })
  })

  test('1000 tokens have unique ids and secrets', () => {
    const tokens = Array.from({ length: 1000 }, () => createSpokeToken())
    expect(new Set(tokens.map((t) => t.id)).size).toBe(1000)
    expect(new Set(tokens.map((t) => parseSpokeToken(t.token).secret)).size).toBe(1000)
    // Every base32 character shows up somewhere, so ids use the whole alphabet.
    expect(new Set(tokens.map((t) => t.id).join('')).size).toBe(32)
  })
})

describe('parseSpokeToken', () => {
  test('splits on the first two underscores only: the secret may contain _ and -', () => {
    const secret = 'ab_cd-ef_gh_ijklmnopqrstuvwxyz'
    expect(parseSpokeToken(`slk_8f3k2a_${secret}`)).toEqual({ id: '8f3k2a', secret })
  })

  test.each([
    ['empty', ''],
    ['wrong prefix', 'slx_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['no separator', 'slk_abcdefghAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['uppercase id', 'slk_ABCDEFGH_AAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['short id', 'slk_abc_AAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['short secret (< 128 bits)', 'slk_abcdefgh_AAAAAAAAAAAAAAAAAAAAA'],
    ['bad secret chars', 'slk_abcdefgh_AAAAAAAAAAAAAAAAAAAA+/AAAAAA'],
    ['huge', `slk_abcdefgh_${'A'.repeat(10_000)}`],
  ])('rejects %s without echoing it', (_what, input) => {
    let caught: unknown
    try {
      parseSpokeToken(input)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(AuthError)
    expect(caught).toMatchObject({ code: 'SLK_ERR_AUTH_TOKEN_MALFORMED', name: 'AuthError' })
    const message = (caught as Error).message
    expect(message).not.toContain('AAAAAAAAAA')
    expect(message.split('\n')).toHaveLength(1)
    if (input !== '') expect(message).not.toContain(input)
    expect(isSpokeToken(input)).toBe(false)
  })

  test('isSpokeToken accepts created tokens and rejects non-strings', () => {
    expect(isSpokeToken(createSpokeToken().token)).toBe(true)
    expect(isSpokeToken(42)).toBe(false)
    expect(isSpokeToken(undefined)).toBe(false)
  })
})

describe('verifySpokeToken', () => {
  const now = new Date('2026-06-01T00:00:00Z')
  const good = createSpokeToken()
  const expired = createSpokeToken()
  const revoked = createSpokeToken()
  const future = createSpokeToken()
  const config = configWith([
    { spoke: 'orion-aws', entry: { id: good.id, sha256: good.sha256 } },
    { spoke: 'orion-aws', entry: { id: expired.id, sha256: expired.sha256, expires: new Date('2026-05-31T23:59:59Z') } },
    { spoke: 'orion-gcp', entry: { id: revoked.id, sha256: revoked.sha256, revoked: true } },
    { spoke: 'orion-gcp', entry: { id: future.id, sha256: future.sha256, expires: new Date('2026-06-01T00:00:01Z') } },
  ])
  const frozen = Object.freeze({ spokes: [...config.spokes] })

  test.each([['plain', config], ['frozen (indexed)', frozen]])('valid token returns its spoke (%s config)', (_kind, cfg) => {
    const result = verifySpokeToken(good.token, cfg, now)
    expect(result.tokenId).toBe(good.id)
    expect(result.spoke.name).toBe('orion-aws')
    expect(verifySpokeToken(future.token, cfg, now).spoke.name).toBe('orion-gcp')
  })

  test('wrong secret for a known id is INVALID', () => {
    const forged = `slk_${good.id}_${parseSpokeToken(createSpokeToken().token).secret}`
    expect(() => verifySpokeToken(forged, config, now)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_INVALID' }))
  })

  test('unknown id is INVALID, with the same message shape as a wrong secret', () => {
    const stranger = createSpokeToken()
    let caught: unknown
    try {
      verifySpokeToken(stranger.token, config, now)
    } catch (err) {
      caught = err
    }
    expect(caught).toMatchObject({ code: 'SLK_ERR_AUTH_TOKEN_INVALID' })
    expect((caught as Error).message).toContain(stranger.id)
    expect((caught as Error).message).not.toContain(parseSpokeToken(stranger.token).secret)
  })

  test('expired token (injected now) is EXPIRED; expiry is exclusive', () => {
    expect(() => verifySpokeToken(expired.token, config, now)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_EXPIRED' }))
    expect(verifySpokeToken(expired.token, config, new Date('2026-05-31T23:59:58Z')).tokenId).toBe(expired.id)
    expect(() => verifySpokeToken(future.token, config, new Date('2026-06-01T00:00:01Z'))).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_EXPIRED' }))
  })

  test('revoked token is REVOKED, but only when the secret matches', () => {
    expect(() => verifySpokeToken(revoked.token, config, now)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_REVOKED' }))
    const forged = `slk_${revoked.id}_${parseSpokeToken(createSpokeToken().token).secret}`
    expect(() => verifySpokeToken(forged, config, now)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_INVALID' }))
  })

  test('malformed token is MALFORMED', () => {
    expect(() => verifySpokeToken('Bearer nope', config, now)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_MALFORMED' }))
  })

  test('error messages never contain the secret', () => {
    for (const t of [expired, revoked]) {
      try {
        verifySpokeToken(t.token, config, now)
      } catch (err) {
        expect((err as Error).message).not.toContain(parseSpokeToken(t.token).secret)
        expect((err as Error).message).toContain(t.id)
      }
    }
  })

  test('hashTokenSecret is hex sha256 of the UTF-8 secret', () => {
    expect(hashTokenSecret('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})
