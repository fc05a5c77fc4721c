import type { IncomingMessage } from 'node:http'
import { describe, expect, test } from 'vitest'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { authenticateUpgrade } from '../src/upgrade-auth.js'

const NOW = new Date('2026-06-01T00:00:00Z')
const live = createSpokeToken()
const revoked = createSpokeToken()
const expired = createSpokeToken()
const SPOKES = parseSpokesConfig([
  'spokes:',
  '  - name: orion-aws',
  '    tokens:',
  `      - {id: ${live.id}, sha256: "${live.sha256}"}`,
  `      - {id: ${revoked.id}, sha256: "${revoked.sha256}", revoked: true}`,
  `      - {id: ${expired.id}, sha256: "${expired.sha256}", expires: "2026-01-01T00:00:00Z"}`,
  '    ports: [{upstream: prometheus, listen: "127.0.0.1:19090"}]',
].join('\n'), 'spokes.yaml')

/** Only the headers are read; a plain object stands in for the request, no socket involved. */
const request = (authorization?: string): IncomingMessage => ({ headers: authorization === undefined ? {} : { authorization } }) as IncomingMessage

describe('authenticateUpgrade', () => {
  test('a refusal names the token id (never the secret) whenever the token parsed', () => {
    const wrongSecret = `slk_${live.id}_${'x'.repeat(43)}`
    expect(authenticateUpgrade(request(`Bearer ${revoked.token}`), SPOKES, NOW)).toEqual({ ok: false, status: 403, reason: 'token revoked', metricReason: 'revoked', tokenId: revoked.id })
    expect(authenticateUpgrade(request(`Bearer ${expired.token}`), SPOKES, NOW)).toEqual({ ok: false, status: 403, reason: 'token expired', metricReason: 'expired', tokenId: expired.id })
    expect(authenticateUpgrade(request(`Bearer ${wrongSecret}`), SPOKES, NOW)).toEqual({ ok: false, status: 401, reason: 'invalid token', metricReason: 'invalid', tokenId: live.id })
    expect(authenticateUpgrade(request('Bearer slk_x'), SPOKES, NOW)).toEqual({ ok: false, status: 401, reason: 'malformed token', metricReason: 'malformed' })
    expect(authenticateUpgrade(request(), SPOKES, NOW)).toMatchObject({ ok: false, status: 401, metricReason: 'missing' })
    expect(authenticateUpgrade(request(`Bearer ${live.token}`), SPOKES, NOW)).toMatchObject({ ok: true, spoke: 'orion-aws', tokenId: live.id })
  })
})
