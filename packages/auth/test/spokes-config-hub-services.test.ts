import { describe, expect, test } from 'vitest'
import { ConfigError, parseSpokesConfig } from '../src/index.js'

function withHubServices (hubServices: string): string {
  return `spokes:\n  - name: orion-aws\n    hubServices: ${hubServices}\n`
}

function messageOf (text: string): string {
  try {
    parseSpokesConfig(text, 'spokes.yaml')
  } catch (err) {
    if (err instanceof ConfigError) {
      expect(err.code).toBe('SLK_ERR_CONFIG_SPOKES_FILE')
      expect(err.message).not.toContain('\n')
      return err.message
    }
    throw err
  }
  throw new Error('expected parseSpokesConfig to throw')
}

describe('spokes file: hubServices', () => {
  test('a spoke lists the hub services it may reach; optional caps stay absent when not set', () => {
    const config = parseSpokesConfig(withHubServices('[{name: remote-write, address: "prometheus-hub.monitoring:9090"}, {name: loki, address: "[::1]:3100", maxConnections: 8, idleTimeout: 90s}]'), 'spokes.yaml')
    expect(config.spokes[0]?.hubServices).toEqual([
      { name: 'remote-write', address: { host: 'prometheus-hub.monitoring', port: 9090 } },
      { name: 'loki', address: { host: '::1', port: 3100 }, maxConnections: 8, idleTimeoutMs: 90_000 },
    ])
  })

  test('allow takes the agent\'s --allow syntax: POST /api/v1/write is one POST rule, a GET rule allows HEAD too', () => {
    const config = parseSpokesConfig(withHubServices('[{name: remote-write, address: "h:1", allow: ["POST /api/v1/write", "GET /-/ready"]}]'), 'spokes.yaml')
    expect(config.spokes[0]?.hubServices?.[0]?.allow).toEqual([
      { method: 'POST', segments: ['api', 'v1', 'write'] },
      { method: 'GET', segments: ['-', 'ready'] },
      { method: 'HEAD', segments: ['-', 'ready'] },
    ])
  })

  test('at most 64 allow rules per hub service', () => {
    const rules = `[${Array.from({ length: 65 }, (_, i) => `"POST /w${i}"`).join(', ')}]`
    expect(messageOf(withHubServices(`[{name: rw, address: "h:1", allow: ${rules}}]`))).toBe('spokes.yaml: spokes[0].hubServices[0].allow: at most 64 rules, got 65')
  })

  test('a spoke without hubServices has none (the key stays absent)', () => {
    expect(parseSpokesConfig('spokes:\n  - name: orion-aws\n', 'spokes.yaml').spokes[0]).not.toHaveProperty('hubServices')
  })

  test.each([
    ['[{address: "h:1"}]', 'spokes.yaml: spokes[0].hubServices[0].name: required: the name agents use with --hub-service (e.g. remote-write)'],
    ['[{name: "Remote Write", address: "h:1"}]', 'spokes.yaml: spokes[0].hubServices[0].name: expected a hub service name matching [a-z0-9][a-z0-9_-]* (at most 63 characters), got "Remote Write"'],
    ['[{name: rw}]', 'spokes.yaml: spokes[0].hubServices[0].address: required: "host:port" the exit-node dials in the hub (e.g. "prometheus-hub.monitoring:9090")'],
    ['[{name: rw, address: "0.0.0.0:9090"}]', 'spokes.yaml: spokes[0].hubServices[0].address: expected "host:port" with an IP or hostname to dial (IPv6 in brackets, not 0.0.0.0 or ::) and a port 1-65535, got "0.0.0.0:9090"'],
    ['[{name: rw, address: "hub:0"}]', 'spokes.yaml: spokes[0].hubServices[0].address: expected "host:port" with an IP or hostname to dial (IPv6 in brackets, not 0.0.0.0 or ::) and a port 1-65535, got "hub:0"'],
    ['[{name: rw, address: "http://hub:9090/api/v1/write"}]', 'spokes.yaml: spokes[0].hubServices[0].address: expected "host:port" with an IP or hostname to dial (IPv6 in brackets, not 0.0.0.0 or ::) and a port 1-65535, got "http://hub:9090/api/v1/write"'],
    ['[{name: rw, address: "h:1"}, {name: rw, address: "h:2"}]', 'spokes.yaml: spokes[0].hubServices[1].name: duplicate hub service "rw" (also spokes[0].hubServices[0].name)'],
    ['[{name: rw, address: "h:1", maxConnections: 0}]', 'spokes.yaml: spokes[0].hubServices[0].maxConnections: expected an integer from 1 to 65536, got number 0'],
    ['[{name: rw, address: "h:1", idleTimeout: 5}]', 'spokes.yaml: spokes[0].hubServices[0].idleTimeout: expected a duration above zero like "5m", "90s" or "500ms", got number 5'],
    ['[{name: rw, address: "h:1", listen: "0.0.0.0:1"}]', 'spokes.yaml: spokes[0].hubServices[0].listen: unknown key (expected one of name, address, maxConnections, idleTimeout, allow)'],
    ['[{name: rw, address: "h:1", allow: []}]', 'spokes.yaml: spokes[0].hubServices[0].allow: expected a non-empty list of rules like "POST /api/v1/write", got a list'],
    ['[{name: rw, address: "h:1", allow: "POST /api/v1/write"}]', 'spokes.yaml: spokes[0].hubServices[0].allow: expected a non-empty list of rules like "POST /api/v1/write", got "POST /api/v1/write"'],
    ['[{name: rw, address: "h:1", allow: ["PUT /api/v1/write"]}]', 'spokes.yaml: spokes[0].hubServices[0].allow[0]: expected rules like "GET /federate" or "GET /api/v1/*" (GET, HEAD or POST), got "PUT /api/v1/write"'],
    ['[{name: rw, address: "h:1", allow: ["POST /api/v1/write", "POST /api/../admin"]}]', 'spokes.yaml: spokes[0].hubServices[0].allow[1]: "/api/../admin" is not a plain path (no %, ;, \\, //, . or .. segments)'],
    ['[{name: rw, address: "h:1", allow: [7]}]', 'spokes.yaml: spokes[0].hubServices[0].allow[0]: expected a rule like "POST /api/v1/write", got number 7'],
    ['{name: rw, address: "h:1"}', 'spokes.yaml: spokes[0].hubServices: expected a list of hub services like {name: remote-write, address: "prometheus-hub.monitoring:9090"}, got a mapping'],
  ])('%s → one line naming the field', (value, message) => {
    expect(messageOf(withHubServices(value))).toBe(message)
  })

  test('at most 16 hub services per spoke (the welcome names them all)', () => {
    const many = `[${Array.from({ length: 17 }, (_, i) => `{name: s${i}, address: "h:${i + 1}"}`).join(', ')}]`
    expect(messageOf(withHubServices(many))).toBe('spokes.yaml: spokes[0].hubServices: at most 16 hub services per spoke, got 17')
  })
})
