import { describe, expect, test } from 'vitest'
import { createSpokeToken, parseSpokesConfig, rotateSpokeToken, setSpokeTokenExpiry } from '../src/index.js'

const T0 = new Date('2026-12-01T12:00:00Z')
const HOUR = 3_600_000

function fileWith (tokens: string[]): string {
  return [
    '# hand-written: kept by every edit',
    'maxSessionsPerSpoke: 3',
    'spokes:',
    '  - name: orion',
    '    tokens:',
    ...tokens.map((t) => `      - ${t}`),
    '    ports: [{upstream: prometheus, listen: "127.0.0.1:19090"}]',
    '  - name: vega',
    `    tokens: [{id: vega1abc, sha256: "${'c'.repeat(64)}"}]`,
    '',
  ].join('\n')
}

describe('rotateSpokeToken', () => {
  test('adds the new token and brings the live old ones forward to the end of the overlap, and nothing else', () => {
    const text = fileWith([
      `{id: live1abc, sha256: "${'a'.repeat(64)}"}`,
      `{id: late1abc, sha256: "${'b'.repeat(64)}", expires: "2027-06-01T00:00:00Z"}`,
      `{id: soon1abc, sha256: "${'d'.repeat(64)}", expires: "2026-12-01T13:00:00Z"}`,
      `{id: dead1abc, sha256: "${'e'.repeat(64)}", revoked: true}`,
    ])
    const fresh = createSpokeToken()
    const end = new Date(T0.getTime() + 24 * HOUR)
    const rotation = rotateSpokeToken(text, 'orion', { id: fresh.id, sha256: fresh.sha256, created: T0 }, end, 'spokes.yaml')
    expect(rotation.shortened).toEqual(['live1abc', 'late1abc'])
    expect(rotation.unchanged).toEqual(['soon1abc', 'dead1abc'])
    const config = parseSpokesConfig(rotation.text, 'spokes.yaml')
    const byId = new Map(config.spokes[0]?.tokens.map((t) => [t.id, t]))
    expect(byId.get('live1abc')?.expires?.toISOString()).toBe('2026-12-02T12:00:00.000Z')
    expect(byId.get('late1abc')?.expires?.toISOString()).toBe('2026-12-02T12:00:00.000Z')
    // Never lengthened: a token ending before the overlap keeps its own end; a revoked one stays revoked.
    expect(byId.get('soon1abc')?.expires?.toISOString()).toBe('2026-12-01T13:00:00.000Z')
    expect(byId.get('dead1abc')?.revoked).toBe(true)
    expect(byId.get(fresh.id)).toEqual({ id: fresh.id, sha256: fresh.sha256, created: T0 })
    expect(byId.get(fresh.id)?.expires).toBeUndefined()
    // Other spokes, the root settings and the comment are untouched.
    expect(config.spokes[1]?.tokens).toEqual([{ id: 'vega1abc', sha256: 'c'.repeat(64) }])
    expect(config.maxSessionsPerSpoke).toBe(3)
    expect(rotation.text.startsWith('# hand-written: kept by every edit\n')).toBe(true)
  })

  test('rotating again with a longer overlap does not push the first rotation\'s end back', () => {
    const first = createSpokeToken()
    const second = createSpokeToken()
    const text = fileWith([`{id: live1abc, sha256: "${'a'.repeat(64)}"}`])
    const once = rotateSpokeToken(text, 'orion', { id: first.id, sha256: first.sha256 }, new Date(T0.getTime() + HOUR))
    const twice = rotateSpokeToken(once.text, 'orion', { id: second.id, sha256: second.sha256 }, new Date(T0.getTime() + 48 * HOUR))
    expect(twice.unchanged).toEqual(['live1abc'])
    expect(twice.shortened).toEqual([first.id])
    const tokens = parseSpokesConfig(twice.text, 'x').spokes[0]?.tokens ?? []
    expect(tokens.map((t) => [t.id, t.expires?.toISOString()])).toEqual([
      ['live1abc', '2026-12-01T13:00:00.000Z'],
      [first.id, '2026-12-03T12:00:00.000Z'],
      [second.id, undefined],
    ])
  })

  test('an unknown spoke is refused and nothing is produced', () => {
    const fresh = createSpokeToken()
    expect(() => rotateSpokeToken(fileWith([]), 'nope', { id: fresh.id, sha256: fresh.sha256 }, T0)).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_UNKNOWN_SPOKE' }))
  })

  test('setSpokeTokenExpiry in a block-style token keeps the layout', () => {
    const text = [
      'spokes:',
      '  - name: orion',
      '    tokens:',
      '      - id: blok1abc',
      `        sha256: "${'a'.repeat(64)}"`,
      '',
    ].join('\n')
    const out = setSpokeTokenExpiry(text, 'blok1abc', new Date(T0.getTime() + HOUR))
    expect(out).toBe(`${text.trimEnd()}\n        expires: "2026-12-01T13:00:00Z"\n`)
  })
})
