import { describe, expect, test } from 'vitest'
import { SERVER_OPTIONS, AGENT_OPTIONS, describeConfig, exitCodeOf, parseDuration, resolveConfig, splitHostPort } from 'spokelink'

describe('resolveConfig', () => {
  test('precedence is flags > env > file > defaults, with sources', () => {
    const resolved = resolveConfig({
      specs: SERVER_OPTIONS,
      flags: { listen: '127.0.0.1:1' },
      env: { SPOKELINK_LISTEN: '127.0.0.1:2', SPOKELINK_KEEPALIVE: '20s' },
      file: { path: 'c.yaml', text: 'listen: 127.0.0.1:3\nkeepalive: 30s\nspokes: s.yaml\n' },
    })
    expect(resolved.config.listen).toBe('127.0.0.1:1')
    expect(resolved.config.keepalive).toBe(20_000)
    expect(resolved.config.spokes).toBe('s.yaml')
    expect(resolved.config['shutdown-grace']).toBe(10_000)
    expect(resolved.sources).toMatchObject({ listen: 'flag', keepalive: 'env', spokes: 'file', 'shutdown-grace': 'default' })
  })

  test('a bad value names the setting, its source and what was expected', () => {
    expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: { keepalive: 'fast' }, env: {} }))
      .toThrow('--keepalive (flag): expected a duration like 15s, 500ms, 5m or 90d, got "fast"')
    expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: { SPOKELINK_KEEPALIVE: 'fast' } }))
      .toThrow('SPOKELINK_KEEPALIVE (env): expected a duration')
    expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: {}, file: { path: 'c.yaml', text: 'keepalive: fast' } }))
      .toThrow('keepalive (c.yaml): expected a duration')
  })

  test('server data-plane and admin settings: defaults, env, and counts that must be whole numbers ≥ 1', () => {
    const defaults = resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: {} }).config
    expect([defaults['admin-listen'], defaults['data-idle-timeout'], defaults['max-connections-per-port'], defaults['sd-host']]).toEqual(['127.0.0.1:9464', 300_000, 256, undefined])
    const fromEnv = resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: { SPOKELINK_ADMIN_LISTEN: '10.0.0.7:0', SPOKELINK_MAX_CONNECTIONS_PER_PORT: '32', SPOKELINK_DATA_IDLE_TIMEOUT: '90s' } })
    expect(fromEnv.config).toMatchObject({ 'admin-listen': '10.0.0.7:0', 'max-connections-per-port': 32, 'data-idle-timeout': 90_000 })
    expect(resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: {}, file: { path: 'c.yaml', text: 'max-connections-per-port: 8' } }).config['max-connections-per-port']).toBe(8)
    for (const bad of ['0', '-1', '1.5', 'lots', '']) {
      expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: { 'max-connections-per-port': bad }, env: {} }))
        .toThrow(`--max-connections-per-port (flag): expected a whole number ≥ 1, got ${JSON.stringify(bad)}`)
    }
    expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: { 'admin-listen': '9464' }, env: {} }))
      .toThrow('--admin-listen (flag): expected an address like 0.0.0.0:8123, got "9464"')
  })

  test('limits are whole numbers ≥ 1 from flags, env or file', () => {
    const resolved = resolveConfig({ specs: SERVER_OPTIONS, flags: { 'max-unauthenticated': '4096' }, env: { SPOKELINK_MAX_SESSIONS_PER_SPOKE: '2' }, file: { path: 'c.yaml', text: 'failed-auth-burst: 20\n' } })
    expect(resolved.config).toMatchObject({ 'max-unauthenticated': 4096, 'max-sessions-per-spoke': 2, 'failed-auth-burst': 20, 'max-unauthenticated-per-source': 128, 'failed-auth-refill': 1000 })
    for (const bad of ['0', '-1', '1.5', 'many', '']) {
      expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: { SPOKELINK_MAX_UNAUTHENTICATED: bad } }))
        .toThrow(`SPOKELINK_MAX_UNAUTHENTICATED (env): expected a whole number ≥ 1, got ${JSON.stringify(bad)}`)
    }
  })

  test('unknown config file keys are errors', () => {
    expect(() => resolveConfig({ specs: SERVER_OPTIONS, flags: {}, env: {}, file: { path: 'c.yaml', text: 'listne: 1' } }))
      .toThrowError(expect.objectContaining({ code: 'SLK_ERR_CONFIG_FILE', message: expect.stringContaining('unknown key "listne"') as string }) as Error)
  })

  test('repeatable flags are lists; env lists are comma-separated', () => {
    const fromEnv = resolveConfig({ specs: AGENT_OPTIONS, flags: {}, env: { SPOKELINK_UPSTREAM: 'prometheus=p:9090, am=a:9093' } })
    expect(fromEnv.config.upstream).toEqual(['prometheus=p:9090', 'am=a:9093'])
    const fromFlags = resolveConfig({ specs: AGENT_OPTIONS, flags: { upstream: ['x=h:1'] }, env: { SPOKELINK_UPSTREAM: 'y=h:2' } })
    expect(fromFlags.config.upstream).toEqual(['x=h:1'])
  })

  test('secrets are redacted in the effective config and in errors', () => {
    const resolved = resolveConfig({ specs: AGENT_OPTIONS, flags: {}, env: { SPOKELINK_TOKEN: 'slk_abcd1234_s3cret' } })
    expect(JSON.stringify(describeConfig(resolved, AGENT_OPTIONS))).not.toContain('s3cret')
    expect(describeConfig(resolved, AGENT_OPTIONS).token).toEqual({ value: '[redacted]', source: 'env' })
  })
})

describe('parsing at the edge', () => {
  test('durations', () => {
    expect([parseDuration('500ms'), parseDuration('15s'), parseDuration('5m'), parseDuration('90d'), parseDuration('fast')])
      .toEqual([500, 15_000, 300_000, 7_776_000_000, undefined])
  })

  test('host:port', () => {
    expect(splitHostPort('0.0.0.0:8123')).toEqual({ host: '0.0.0.0', port: 8123 })
    expect(splitHostPort('[::1]:80')).toEqual({ host: '::1', port: 80 })
    expect(splitHostPort(':80')).toEqual({ host: '0.0.0.0', port: 80 })
    expect(splitHostPort('8123')).toBeUndefined()
  })

  test('exit codes: usage and config errors are 2, the rest 1', () => {
    expect(exitCodeOf({ code: 'SLK_ERR_USAGE_FLAG' })).toBe(2)
    expect(exitCodeOf({ code: 'SLK_ERR_CONFIG_SPOKES_FILE' })).toBe(2)
    expect(exitCodeOf({ code: 'SLK_ERR_EXIT_LISTEN' })).toBe(1)
    expect(exitCodeOf(new Error('bug'))).toBe(1)
  })
})
