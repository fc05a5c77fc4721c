import { describe, expect, test } from 'vitest'
import { createSpokeToken, encodeJoinToken, quoteValue, redactSecrets } from '@spokelink/auth'

describe('redactSecrets', () => {
  test('a spoke token keeps only its id', () => {
    const { token, id } = createSpokeToken()
    const secret = token.slice(`slk_${id}_`.length)
    const out = redactSecrets(`--label: expected key=value, got "${token}"`)
    expect(out).toBe(`--label: expected key=value, got "slk_${id}_…(redacted)"`)
    expect(out).not.toContain(secret)
  })

  test('a join token keeps only its prefix', () => {
    const { token } = createSpokeToken()
    const join = encodeJoinToken({ server: 'wss://hub.example.com/connect', caSha256: 'a'.repeat(64), token })
    expect(redactSecrets(`got ${join}.`)).toBe('got slkj1.…(redacted).')
  })

  test('a bare secret (long mixed-case base64url run) keeps 4 characters', () => {
    const { token, id } = createSpokeToken()
    const secret = token.slice(`slk_${id}_`.length)
    expect(redactSecrets(`x=${secret}`)).toBe(`x=${secret.slice(0, 4)}…(redacted)`)
  })

  test('a bare secret without a digit is redacted too (about 1 secret in 150 has none)', () => {
    const secret = 'ZdsCngpgRgombPCGjLj_BGfeS_XYELvssqBkQwertYuiopA'
    expect(redactSecrets(`x=${secret}`)).toBe('x=ZdsC…(redacted)')
  })

  test('every token in a text is redacted, wherever it stands', () => {
    const tokens = [createSpokeToken(), createSpokeToken()]
    const text = `a ${tokens[0]?.token ?? ''},${tokens[1]?.token ?? ''} "${tokens[0]?.token ?? ''}"`
    const out = redactSecrets(text)
    for (const { token, id } of tokens) expect(out).not.toContain(token.slice(`slk_${id}_`.length))
  })

  test.each([
    'wss://hub.example.com/connect',
    '--keepalive (flag): expected a duration like 15s, 500ms, 5m or 90d, got "fast"',
    'caSha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    '/var/lib/spokelink/spokes.yaml: unknown key "tokenz"',
    'SLK_ERR_AGENT_INSECURE_AND_SOMETHING_LONG',
    'prometheus=prometheus-server.monitoring.svc:9090',
    '--max-connections-per-hub-service: maxConnectionsPerHubService must be a positive integer',
    'SpokeSessionEndedBeforeWelcome',
  ])('leaves ordinary text alone: %s', (text) => {
    expect(redactSecrets(text)).toBe(text)
  })
})

describe('quoteValue', () => {
  test('quotes, redacts, then cuts', () => {
    const { token, id } = createSpokeToken()
    expect(quoteValue(token)).toBe(`"slk_${id}_…(redacted)"`)
    expect(quoteValue('fast')).toBe('"fast"')
    expect(quoteValue(42)).toBe('"42"')
    expect(quoteValue('x'.repeat(300))).toBe(`"${'x'.repeat(100)}…"`)
  })
})
