import { createHash } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { parseSpokesConfig, sessionRevocationReason } from '../src/index.js'

const sha = (secret: string): string => createHash('sha256').update(secret).digest('hex')
const NOW = new Date('2026-06-01T00:00:00Z')

/** A spokes file with token `tok1abcd` of spoke `a` under the given entry fields, plus spoke `b`. */
function spokes (tokenA: string, tokensB = '[]'): ReturnType<typeof parseSpokesConfig> {
  return parseSpokesConfig([
    'spokes:',
    `  - {name: a, tokens: [${tokenA}], ports: [{upstream: prometheus, listen: "127.0.0.1:19090"}]}`,
    `  - {name: b, tokens: ${tokensB}, ports: [{upstream: prometheus, listen: "127.0.0.1:19091"}]}`,
  ].join('\n'), 'spokes.yaml')
}

const credential = { spoke: 'a', tokenId: 'tok1abcd', tokenSha256: sha('old-secret') }

describe('sessionRevocationReason', () => {
  test('the credential the session authenticated with still holds: no reason (the hash compares case-insensitively)', () => {
    expect(sessionRevocationReason(spokes(`{id: tok1abcd, sha256: "${sha('old-secret')}"}`), credential, NOW)).toBeUndefined()
    expect(sessionRevocationReason(spokes(`{id: tok1abcd, sha256: "${sha('old-secret').toUpperCase()}"}`), credential, NOW)).toBeUndefined()
    expect(sessionRevocationReason(spokes(`{id: tok1abcd, sha256: "${sha('old-secret')}", expires: "2026-06-01T00:00:01Z"}`), credential, NOW)).toBeUndefined()
  })

  // Issue 7 item 3: a new hash under the same id left the live session serving.
  test('every change that would refuse the credential at the upgrade ends the session, with its reason', () => {
    const cases: Array<[string, ReturnType<typeof parseSpokesConfig>]> = [
      ['token hash changed', spokes(`{id: tok1abcd, sha256: "${sha('new-secret')}"}`)],
      ['token revoked', spokes(`{id: tok1abcd, sha256: "${sha('old-secret')}", revoked: true}`)],
      ['token expired', spokes(`{id: tok1abcd, sha256: "${sha('old-secret')}", expires: "2026-06-01T00:00:00Z"}`)],
      ['token revoked', spokes('')],
      ['token moved to another spoke', spokes('', `[{id: tok1abcd, sha256: "${sha('old-secret')}"}]`)],
      ['spoke removed', parseSpokesConfig('spokes: []\n', 'x')],
    ]
    expect(cases.map(([, config]) => sessionRevocationReason(config, credential, NOW))).toEqual(cases.map(([reason]) => reason))
  })
})
