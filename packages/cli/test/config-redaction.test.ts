import { describe, expect, test } from 'vitest'
import { createSpokeToken, encodeJoinToken } from '@spokelink/auth'
import { AGENT_OPTIONS, SERVER_OPTIONS, describeConfig, resolveConfig } from 'spokelink'

const pasted = createSpokeToken()
const secret = pasted.token.slice(`slk_${pasted.id}_`.length)
const joinToken = encodeJoinToken({ server: 'wss://hub.example.com/connect', token: pasted.token })

describe('a token pasted into a setting that is not secret', () => {
  test('the startup settings log shows its id, not its secret', () => {
    const resolved = resolveConfig({
      specs: AGENT_OPTIONS,
      flags: { label: [`env=${pasted.token}`, 'team=obs'], name: joinToken },
      env: {},
    })
    const logged = describeConfig(resolved, AGENT_OPTIONS)
    expect(logged.label).toEqual({ value: [`env=slk_${pasted.id}_…(redacted)`, 'team=obs'], source: 'flag' })
    expect(logged.name).toEqual({ value: 'slkj1.…(redacted)', source: 'flag' })
    expect(JSON.stringify(logged)).not.toContain(secret)
  })

  test.each([
    ['flag', { flags: { keepalive: pasted.token }, env: {} }, '--keepalive (flag)'],
    ['env', { flags: {}, env: { SPOKELINK_KEEPALIVE: joinToken } }, 'SPOKELINK_KEEPALIVE (env)'],
    ['file', { flags: {}, env: {}, file: { path: 'c.yaml', text: `keepalive: ${pasted.token}\n` } }, 'keepalive (c.yaml)'],
    ['file key', { flags: {}, env: {}, file: { path: 'c.yaml', text: `${pasted.token}: 1\n` } }, 'unknown key "slk_'],
  ] as const)('an invalid value from a %s is named with its source, the secret left out', (_source, input, named) => {
    let message = ''
    try {
      resolveConfig({ specs: SERVER_OPTIONS, ...input })
    } catch (err) {
      message = err instanceof Error ? err.message : ''
    }
    expect(message).toContain(named)
    expect(message).not.toContain(secret)
    expect(message).not.toContain(joinToken.slice(6))
  })
})
