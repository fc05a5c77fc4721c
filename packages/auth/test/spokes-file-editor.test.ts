import { describe, expect, test } from 'vitest'
import { addSpokeToken, createSpokeToken, listSpokeTokens, parseSpokesConfig, revokeSpokeToken, verifySpokeToken } from '../src/index.js'

const SHA = 'a'.repeat(64)
const SHA_B = 'b'.repeat(64)
const AWS = `  - name: orion-aws                  # DNS-1123 label; becomes the Service name
    labels: {cluster: orion-aws, env: prod}
    tokens:
      - {id: 8f3k2a, sha256: "${SHA}", expires: "2027-01-01T00:00:00Z"}   # first token
    ports:
      - {upstream: prometheus, listen: "0.0.0.0:19090"}
`
const GCP = `  # the GCP customer; keep this comment
  - name: orion-gcp
    labels:
      cluster:   orion-gcp     # aligned on purpose
      env: 'staging'
    tokens:
      - id: gcp1abcd
        sha256: ${SHA_B}   # block style
    ports:
      - upstream: prometheus
        listen: 0.0.0.0:19091
`
const FILE = `# spokes served by hub-1\nspokes:\n${AWS}\n${GCP}`

describe('addSpokeToken', () => {
  test('appends a flow entry to a block token list and keeps every other byte', () => {
    const out = addSpokeToken(FILE, 'orion-aws', { id: 'newtok22', sha256: SHA_B, created: new Date('2026-01-02T03:04:05Z'), expires: new Date('2027-06-01T00:00:00.500Z') })
    const line = `      - {id: newtok22, sha256: "${SHA_B}", created: "2026-01-02T03:04:05Z", expires: "2027-06-01T00:00:00.500Z"}\n`
    const [before, after] = [AWS.slice(0, AWS.indexOf('    ports:')), AWS.slice(AWS.indexOf('    ports:'))]
    expect(out).toBe(`# spokes served by hub-1\nspokes:\n${before}${line}${after}\n${GCP}`)
    const tokens = parseSpokesConfig(out, 'spokes.yaml').spokes[0]?.tokens
    expect(tokens?.map((t) => t.id)).toEqual(['8f3k2a', 'newtok22'])
  })

  test('appends to the block-mapping token list of another spoke', () => {
    const out = addSpokeToken(FILE, 'orion-gcp', { id: 'gcp2abcd', sha256: SHA })
    expect(out.startsWith(`# spokes served by hub-1\nspokes:\n${AWS}\n`)).toBe(true)
    expect(out).toContain(`        sha256: ${SHA_B}   # block style\n      - {id: gcp2abcd, sha256: "${SHA}"}\n    ports:\n`)
    expect(out).toContain('      cluster:   orion-gcp     # aligned on purpose\n')
  })

  test('adds a tokens list to a spoke without one, and fills an empty flow list', () => {
    const noTokens = 'spokes:\n  - name: a   # comment\n    ports:\n      - {upstream: p, listen: "127.0.0.1:1"}\n  - {name: b, tokens: []}\n'
    const out1 = addSpokeToken(noTokens, 'a', { id: 'aaaa1111', sha256: SHA })
    expect(out1).toBe(`spokes:\n  - name: a   # comment\n    ports:\n      - {upstream: p, listen: "127.0.0.1:1"}\n    tokens:\n      - {id: aaaa1111, sha256: "${SHA}"}\n  - {name: b, tokens: []}\n`)
    const out2 = addSpokeToken(out1, 'b', { id: 'bbbb2222', sha256: SHA_B })
    expect(out2).toBe(out1.replace('tokens: []', `tokens: [{id: bbbb2222, sha256: "${SHA_B}"}]`))
    const out3 = addSpokeToken(out2, 'b', { id: '22334455', sha256: SHA_B })
    expect(out3).toContain(`[{id: bbbb2222, sha256: "${SHA_B}"}, {id: "22334455", sha256: "${SHA_B}"}]`)
    expect(parseSpokesConfig(out3, 'x').spokes[1]?.tokens.map((t) => t.id)).toEqual(['bbbb2222', '22334455'])
  })

  test('works on JSON files (the result stays valid)', () => {
    const json = JSON.stringify({ spokes: [{ name: 'a', tokens: [], ports: [] }] }, null, 2)
    const out = addSpokeToken(json, 'a', { id: 'abcd1234', sha256: SHA })
    expect(parseSpokesConfig(out, 'x').spokes[0]?.tokens[0]?.id).toBe('abcd1234')
  })

  test('a token created and added verifies against the edited file', () => {
    const created = createSpokeToken()
    const out = addSpokeToken(FILE, 'orion-gcp', { id: created.id, sha256: created.sha256 })
    expect(verifySpokeToken(created.token, parseSpokesConfig(out, 'x'), new Date()).spoke.name).toBe('orion-gcp')
  })

  test('unknown spoke and duplicate id are typed errors', () => {
    expect(() => addSpokeToken(FILE, 'nope', { id: 'abcd1234', sha256: SHA })).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_UNKNOWN_SPOKE' }))
    expect(() => addSpokeToken(FILE, 'orion-aws', { id: 'gcp1abcd', sha256: SHA })).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_DUPLICATE', message: expect.stringContaining('orion-gcp') }))
    expect(() => addSpokeToken(FILE, 'orion-aws', { id: 'abcd1234', sha256: 'zz' })).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_SPOKES_FILE' }))
    expect(() => addSpokeToken('spokes: [', 'a', { id: 'abcd1234', sha256: SHA }, 'spokes.yaml')).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_SPOKES_FILE', message: expect.stringContaining('spokes.yaml:') }))
  })
})

describe('revokeSpokeToken', () => {
  test('adds revoked: true to a flow entry, keeping everything else', () => {
    const out = revokeSpokeToken(FILE, '8f3k2a')
    expect(out).toBe(FILE.replace('expires: "2027-01-01T00:00:00Z"}', 'expires: "2027-01-01T00:00:00Z", revoked: true}'))
    expect(parseSpokesConfig(out, 'x').spokes[0]?.tokens[0]?.revoked).toBe(true)
  })

  test('adds revoked: true to a block entry', () => {
    const out = revokeSpokeToken(FILE, 'gcp1abcd')
    expect(out).toBe(FILE.replace(`        sha256: ${SHA_B}   # block style\n`, `        sha256: ${SHA_B}   # block style\n        revoked: true\n`))
  })

  test('flips revoked: false, and is idempotent', () => {
    const text = `spokes:\n  - name: a\n    tokens:\n      - {id: abcd, sha256: "${SHA}", revoked: false}  # c\n`
    const out = revokeSpokeToken(text, 'abcd')
    expect(out).toBe(text.replace('revoked: false', 'revoked: true'))
    expect(revokeSpokeToken(out, 'abcd')).toBe(out)
  })

  test('a revoked token is answered REVOKED', () => {
    const created = createSpokeToken()
    const added = addSpokeToken(FILE, 'orion-aws', { id: created.id, sha256: created.sha256 })
    const revoked = revokeSpokeToken(added, created.id)
    expect(() => verifySpokeToken(created.token, parseSpokesConfig(revoked, 'x'), new Date())).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_TOKEN_REVOKED' }))
  })

  test('unknown token id is SLK_ERR_CONFIG_UNKNOWN_TOKEN', () => {
    expect(() => revokeSpokeToken(FILE, 'zzzz9999')).toThrow(expect.objectContaining({ code: 'SLK_ERR_CONFIG_UNKNOWN_TOKEN' }))
  })
})

describe('files with session caps', () => {
  // Regression: the edit was checked against a config rebuilt from `spokes` alone, so a file with the top-level
  // maxSessionsPerSpoke (the README's example) failed with "cannot edit this file's layout safely".
  const CAPPED = 'maxSessionsPerSpoke: 4\nspokes:\n  - name: orion-aws\n    tokens: []   # filled by token create\n    maxSessions: 2\n    ports:\n      - {upstream: prometheus, listen: "0.0.0.0:19090"}\n'
  test('addSpokeToken and revokeSpokeToken keep maxSessionsPerSpoke and maxSessions', () => {
    const added = addSpokeToken(CAPPED, 'orion-aws', { id: 'capped22', sha256: SHA })
    expect(added).toBe(CAPPED.replace('tokens: []', `tokens: [{id: capped22, sha256: "${SHA}"}]`))
    const revoked = revokeSpokeToken(added, 'capped22')
    expect(revoked).toBe(CAPPED.replace('tokens: []', `tokens: [{id: capped22, sha256: "${SHA}", revoked: true}]`))
    expect(parseSpokesConfig(revoked, 'test')).toMatchObject({ maxSessionsPerSpoke: 4, spokes: [{ maxSessions: 2 }] })
  })
})

describe('listSpokeTokens', () => {
  test('lists every token with its spoke and status', () => {
    const config = parseSpokesConfig(revokeSpokeToken(FILE, 'gcp1abcd'), 'x')
    expect(listSpokeTokens(config)).toEqual([
      { spoke: 'orion-aws', id: '8f3k2a', revoked: false, expires: new Date('2027-01-01T00:00:00Z') },
      { spoke: 'orion-gcp', id: 'gcp1abcd', revoked: true },
    ])
  })
})

describe('layouts too unusual to splice', () => {
  test('an empty "tokens:" falls back to the Document API and keeps comments', () => {
    const text = '# top comment\nspokes:\n  - name: a   # spoke a\n    tokens:\n    ports: []\n'
    const out = addSpokeToken(text, 'a', { id: 'abcd1234', sha256: SHA })
    expect(out).toContain('# top comment')
    expect(out).toContain('# spoke a')
    expect(parseSpokesConfig(out, 'x').spokes[0]?.tokens.map((t) => t.id)).toEqual(['abcd1234'])
  })
})
