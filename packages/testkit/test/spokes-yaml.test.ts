import { describe, expect, test } from 'vitest'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { spokesYaml } from '@spokelink/testkit'

describe('spokesYaml', () => {
  test('writes a spokes file the real parser reads back field for field', () => {
    const [a, b] = [createSpokeToken(), createSpokeToken()]
    const expires = new Date('2031-01-01T00:00:00Z')
    const text = spokesYaml([
      { name: 'orion', labels: { env: 'test' }, tokens: [a, { ...b, expires, revoked: true }], ports: [{ upstream: 'prometheus', port: 19090 }] },
      { name: 'lyra', tokens: [], ports: [] },
      { name: 'vega', requireClientCert: true, tokens: [], ports: [] },
    ])
    const config = parseSpokesConfig(text, 'test')
    const [orion, lyra, vega] = config.spokes
    expect(orion).toMatchObject({ name: 'orion', labels: { env: 'test' } })
    expect(orion?.tokens.map((t) => ({ id: t.id, expires: t.expires, revoked: t.revoked === true }))).toEqual([
      { id: a.id, expires: undefined, revoked: false },
      { id: b.id, expires, revoked: true },
    ])
    expect(orion?.ports.map((p) => ({ upstream: p.upstream, host: p.listen.host, port: p.listen.port }))).toEqual([{ upstream: 'prometheus', host: '127.0.0.1', port: 19090 }])
    expect(lyra).toMatchObject({ name: 'lyra', tokens: [], ports: [] })
    expect(lyra?.requireClientCert).toBeUndefined()
    expect(vega).toMatchObject({ name: 'vega', requireClientCert: true })
    expect(text).toContain('  - name: lyra\n    tokens: []\n    ports: []\n')
  })
})
