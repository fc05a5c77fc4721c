import { describe, expect, test } from 'vitest'
import { ConfigError, createSpokeToken, parseSpokesConfig } from '../src/index.js'

const SHA = 'a'.repeat(64)
const EXAMPLE = `spokes:
  - name: orion-aws                  # DNS-1123 label; becomes the Service name
    labels: {cluster: orion-aws, env: prod}
    tokens:
      - {id: 8f3k2a, sha256: "${SHA}", expires: "2027-01-01T00:00:00Z"}
    ports:
      - {upstream: prometheus, listen: "0.0.0.0:19090"}
`

function errorOf (text: string): ConfigError {
  try {
    parseSpokesConfig(text, 'spokes.yaml')
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error('expected parseSpokesConfig to throw')
}

/** A one-spoke file whose single token and port can be overridden, as YAML flow mappings. */
function withSpoke (spoke: string): string {
  return `spokes:\n  - ${spoke}\n`
}

describe('parseSpokesConfig', () => {
  test('parses the DESIGN example', () => {
    const config = parseSpokesConfig(EXAMPLE, 'spokes.yaml')
    expect(config).toEqual({
      spokes: [{
        name: 'orion-aws',
        labels: { cluster: 'orion-aws', env: 'prod' },
        tokens: [{ id: '8f3k2a', sha256: SHA, expires: new Date('2027-01-01T00:00:00Z') }],
        ports: [{ upstream: 'prometheus', listen: { host: '0.0.0.0', port: 19090 } }],
      }],
    })
    expect(Object.isFrozen(config)).toBe(true)
    expect(Object.isFrozen(config.spokes[0]?.ports[0]?.listen)).toBe(true)
  })

  test('accepts JSON, optional fields, IPv6 listen, revoked/created, date-only and offset dates', () => {
    const json = JSON.stringify({
      spokes: [
        { name: 'a', ports: [{ upstream: 'prom_1', listen: '[::1]:9000' }] },
        {
          name: 'b-2',
          tokens: [
            { id: 'abcd2345', sha256: SHA.toUpperCase(), revoked: true, created: '2026-01-01', expires: '2027-01-01T01:00:00+01:00' },
          ],
          ports: [{ upstream: 'p', listen: 'exit-node.local:9001' }],
        },
        { name: 'c', tokens: [], ports: [], labels: {} },
      ],
    })
    const config = parseSpokesConfig(json, 'spokes.json')
    expect(config.spokes[0]).toEqual({ name: 'a', labels: {}, tokens: [], ports: [{ upstream: 'prom_1', listen: { host: '::1', port: 9000 } }] })
    expect(config.spokes[1]?.tokens[0]).toEqual({
      id: 'abcd2345', sha256: SHA, revoked: true, created: new Date('2026-01-01T00:00:00Z'), expires: new Date('2027-01-01T00:00:00Z'),
    })
    expect(config.spokes[1]?.ports[0]?.listen).toEqual({ host: 'exit-node.local', port: 9001 })
  })

  test('session caps: the file-wide maxSessionsPerSpoke and a spoke\'s own maxSessions, both optional', () => {
    const config = parseSpokesConfig('maxSessionsPerSpoke: 2\nspokes:\n  - {name: a, maxSessions: 8}\n  - {name: b}\n', 'spokes.yaml')
    expect(config.maxSessionsPerSpoke).toBe(2)
    expect(config.spokes.map((spoke) => spoke.maxSessions)).toEqual([8, undefined])
    expect('maxSessionsPerSpoke' in parseSpokesConfig('spokes: []\n', 'spokes.yaml')).toBe(false)
  })

  test('accepts an empty spokes list', () => {
    expect(parseSpokesConfig('spokes: []\n', 'spokes.yaml')).toEqual({ spokes: [] })
  })

  const token = createSpokeToken().token
  test.each([
    ['listen without host', withSpoke('{name: a, ports: [{upstream: p, listen: "19090"}]}'), 'spokes.yaml: spokes[0].ports[0].listen: expected "host:port" with an IP or hostname (IPv6 in brackets) and a port 1-65535, got "19090"'],
    ['port 0', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:0"}]}'), 'spokes[0].ports[0].listen: expected "host:port"'],
    ['port 65536', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:65536"}]}'), 'spokes[0].ports[0].listen:'],
    ['unbracketed IPv6', withSpoke('{name: a, ports: [{upstream: p, listen: "::1:9000"}]}'), 'spokes[0].ports[0].listen:'],
    ['listen as number', withSpoke('{name: a, ports: [{upstream: p, listen: 19090}]}'), 'spokes[0].ports[0].listen: expected "host:port" with an IP or hostname (IPv6 in brackets) and a port 1-65535, got number 19090'],
    ['upstream name', withSpoke('{name: a, ports: [{upstream: Prom, listen: "0.0.0.0:1"}]}'), 'spokes[0].ports[0].upstream: expected an upstream name matching [a-z0-9][a-z0-9_-]*'],
    ['missing upstream', withSpoke('{name: a, ports: [{listen: "0.0.0.0:1"}]}'), 'spokes[0].ports[0].upstream: required'],
    ['name uppercase', withSpoke('{name: Orion}'), 'spokes.yaml: spokes[0].name: expected a DNS-1123 label'],
    ['name trailing dash', withSpoke('{name: orion-}'), 'spokes[0].name: expected a DNS-1123 label'],
    ['name too long', withSpoke(`{name: ${'a'.repeat(64)}}`), 'spokes[0].name: expected a DNS-1123 label'],
    ['missing name', withSpoke('{labels: {}}'), 'spokes[0].name: required'],
    ['bad sha256', withSpoke('{name: a, tokens: [{id: abcd, sha256: "xyz"}]}'), 'spokes[0].tokens[0].sha256: expected 64 hex digits'],
    ['raw token as sha256', withSpoke(`{name: a, tokens: [{id: abcd, sha256: "${token}"}]}`), 'this looks like a raw token'],
    ['bad id', withSpoke(`{name: a, tokens: [{id: "AB_CD", sha256: "${SHA}"}]}`), 'spokes[0].tokens[0].id: expected a token id'],
    ['numeric id', withSpoke(`{name: a, tokens: [{id: 12345678, sha256: "${SHA}"}]}`), 'got number 12345678'],
    ['bad expires', withSpoke(`{name: a, tokens: [{id: abcd, sha256: "${SHA}", expires: "next year"}]}`), 'spokes[0].tokens[0].expires: expected an ISO 8601 date'],
    ['impossible date', withSpoke(`{name: a, tokens: [{id: abcd, sha256: "${SHA}", expires: "2027-02-30"}]}`), 'spokes[0].tokens[0].expires: expected an ISO 8601 date'],
    ['time without zone', withSpoke(`{name: a, tokens: [{id: abcd, sha256: "${SHA}", expires: "2027-01-01T00:00:00"}]}`), 'spokes[0].tokens[0].expires:'],
    ['revoked not boolean', withSpoke(`{name: a, tokens: [{id: abcd, sha256: "${SHA}", revoked: "yes"}]}`), 'spokes[0].tokens[0].revoked: expected true or false, got "yes"'],
    ['label value number', withSpoke('{name: a, labels: {tier: 1}}'), 'spokes[0].labels.tier: expected a string'],
    ['reserved label name', withSpoke('{name: a, labels: {__x: y}}'), 'spokes[0].labels.__x: expected a Prometheus label name'],
    ['tokens not a list', withSpoke('{name: a, tokens: {id: abcd}}'), 'spokes[0].tokens: expected a list of tokens, got a mapping'],
    ['unknown spoke key', withSpoke('{name: a, upstreams: []}'), 'spokes.yaml: spokes[0].upstreams: unknown key (expected one of name, labels, tokens, ports, hubServices, maxSessions, requireClientCert, revokedSerials)'],
    ['maxSessions 0', withSpoke('{name: a, maxSessions: 0}'), 'spokes.yaml: spokes[0].maxSessions: expected an integer from 1 to 10000 (live sessions at once), got number 0'],
    ['maxSessions fraction', withSpoke('{name: a, maxSessions: 1.5}'), 'spokes[0].maxSessions: expected an integer from 1 to 10000'],
    ['maxSessions string', withSpoke('{name: a, maxSessions: "4"}'), 'spokes[0].maxSessions: expected an integer from 1 to 10000 (live sessions at once), got "4"'],
    ['maxSessionsPerSpoke too large', 'maxSessionsPerSpoke: 40000\nspokes: []\n', 'spokes.yaml: maxSessionsPerSpoke: expected an integer from 1 to 10000 (live sessions at once), got number 40000'],
    ['unknown token key', withSpoke(`{name: a, tokens: [{id: abcd, sha256: "${SHA}", note: hi}]}`), 'spokes[0].tokens[0].note: unknown key'],
    ['unknown port key', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:1", tls: true}]}'), 'spokes[0].ports[0].tls: unknown key'],
    ['idleTimeout without unit', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:1", idleTimeout: 300}]}'), 'spokes[0].ports[0].idleTimeout: expected a duration above zero like "5m", "90s" or "500ms", got number 300'],
    ['idleTimeout zero', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:1", idleTimeout: "0s"}]}'), 'spokes[0].ports[0].idleTimeout: expected a duration above zero'],
    ['maxConnections zero', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:1", maxConnections: 0}]}'), 'spokes[0].ports[0].maxConnections: expected an integer from 1 to 2147483648, got number 0'],
    ['maxConnections as text', withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:1", maxConnections: "8"}]}'), 'spokes[0].ports[0].maxConnections: expected an integer from 1'],
    ['unknown root key', 'spokes: []\nversion: 2\n', 'spokes.yaml: version: unknown key (expected one of spokes, maxSessionsPerSpoke)'],
    ['missing spokes', 'spoke: []\n', 'spokes.yaml: spoke: unknown key'],
    ['empty file', '', 'spokes.yaml: spokes: required'],
    ['root is a list', '- a\n', 'spokes.yaml: (root): expected a mapping'],
    ['duplicate spoke', 'spokes:\n  - {name: a}\n  - {name: a}\n', 'spokes.yaml: spokes[1].name: duplicate spoke name "a" (also spokes[0].name)'],
    ['duplicate token id across spokes', `spokes:\n  - {name: a, tokens: [{id: abcd, sha256: "${SHA}"}]}\n  - {name: b, tokens: [{id: abcd, sha256: "${SHA}"}]}\n`, 'spokes[1].tokens[0].id: duplicate token id "abcd" (also spokes[0].tokens[0].id of spoke a)'],
    ['duplicate listen', 'spokes:\n  - {name: a, ports: [{upstream: p, listen: "127.0.0.1:9000"}]}\n  - {name: b, ports: [{upstream: p, listen: "127.0.0.1:9000"}]}\n', 'spokes[1].ports[0].listen: address "127.0.0.1:9000" collides with spokes[0].ports[0].listen (spoke a)'],
    ['wildcard collides with specific host', 'spokes:\n  - {name: a, ports: [{upstream: p, listen: "127.0.0.1:9000"}]}\n  - {name: b, ports: [{upstream: p, listen: "0.0.0.0:9000"}]}\n', 'spokes[1].ports[0].listen: address "0.0.0.0:9000" collides'],
    ['YAML syntax error', 'spokes:\n  - name: a\n   ports: [1\n', 'spokes.yaml:3:'],
    ['duplicate YAML key', 'spokes: []\nspokes: []\n', 'spokes.yaml:2:1: invalid YAML: Map keys must be unique'],
  ])('%s → one-line error naming the field', (_what, text, expected) => {
    const err = errorOf(text)
    expect(err.code).toBe('SLK_ERR_CONFIG_SPOKES_FILE')
    expect(err.name).toBe('ConfigError')
    expect(err.message).toContain(expected)
    expect(err.message.startsWith('spokes.yaml')).toBe(true)
    expect(err.message).not.toContain('\n')
    expect(err.message).not.toContain(token)
  })

  test('a port may set its own idleTimeout and maxConnections; absent ones stay absent (the exit-node default applies)', () => {
    const text = withSpoke('{name: a, ports: [{upstream: p, listen: "0.0.0.0:1", idleTimeout: "90s", maxConnections: 8}, {upstream: q, listen: "0.0.0.0:2", idleTimeout: 500ms}]}')
    const ports = parseSpokesConfig(text, 'spokes.yaml').spokes[0]?.ports
    expect(ports).toStrictEqual([
      { upstream: 'p', listen: { host: '0.0.0.0', port: 1 }, idleTimeoutMs: 90_000, maxConnections: 8 },
      { upstream: 'q', listen: { host: '0.0.0.0', port: 2 }, idleTimeoutMs: 500 },
    ])
  })

  test('different hosts on the same port are fine', () => {
    const text = 'spokes:\n  - {name: a, ports: [{upstream: p, listen: "127.0.0.1:9000"}]}\n  - {name: b, ports: [{upstream: p, listen: "127.0.0.2:9000"}]}\n'
    expect(parseSpokesConfig(text, 'spokes.yaml').spokes).toHaveLength(2)
  })
})
