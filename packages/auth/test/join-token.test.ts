import { describe, expect, test } from 'vitest'
import { createSpokeToken, decodeJoinToken, encodeJoinToken, JOIN_TOKEN_PREFIX } from '../src/index.js'

const { token } = createSpokeToken()
const caSha256 = 'ab'.repeat(32)

function b64 (value: unknown): string {
  return JOIN_TOKEN_PREFIX + Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
}

describe('join token', () => {
  test('round-trips with and without caSha256', () => {
    const full = encodeJoinToken({ server: 'wss://hub.example.com/connect', caSha256, token })
    expect(full.startsWith('slkj1.')).toBe(true)
    expect(full.slice(6)).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(decodeJoinToken(full)).toEqual({ server: 'wss://hub.example.com/connect', caSha256, token })
    const plain = encodeJoinToken({ server: 'ws://127.0.0.1:8123/connect', token })
    expect(decodeJoinToken(plain)).toEqual({ server: 'ws://127.0.0.1:8123/connect', token })
    expect(Object.keys(decodeJoinToken(plain))).toEqual(['server', 'token'])
  })

  test('lowercases caSha256', () => {
    const s = encodeJoinToken({ server: 'wss://h/connect', caSha256: caSha256.toUpperCase(), token })
    expect(decodeJoinToken(s).caSha256).toBe(caSha256)
  })

  test('the payload is base64url JSON of {server, caSha256, token}', () => {
    const s = encodeJoinToken({ server: 'wss://h/connect', caSha256, token })
    expect(JSON.parse(Buffer.from(s.slice(6), 'base64url').toString('utf8'))).toEqual({ server: 'wss://h/connect', caSha256, token })
  })

  test.each([
    ['wrong prefix', `slkj2.${b64({ server: 'wss://h', token }).slice(6)}`],
    ['no prefix', token],
    ['not base64url', `${JOIN_TOKEN_PREFIX}${token}!!`],
    ['not JSON', b64(`{"server": "wss://h", "token": "${token}"`)],
    ['JSON array', b64([token])],
    ['http server', b64({ server: 'https://hub.example.com', token })],
    ['not a URL', b64({ server: `wss//${token}`, token })],
    ['credentials in URL', b64({ server: `wss://user:${token}@hub`, token })],
    ['bad caSha256', b64({ server: 'wss://h', caSha256: `${token}`, token })],
    ['short caSha256', b64({ server: 'wss://h', caSha256: 'abc', token })],
    ['malformed spoke token', b64({ server: 'wss://h', token: `${token}!` })],
    ['missing token', b64({ server: 'wss://h' })],
    ['unknown field', b64({ server: 'wss://h', token, extra: token })],
    ['too long', b64({ server: 'wss://h', token, pad: 'x'.repeat(5000) })],
  ])('rejects %s with a message that does not echo the input', (_what, input) => {
    let caught: unknown
    try {
      decodeJoinToken(input)
    } catch (err) {
      caught = err
    }
    expect(caught).toMatchObject({ name: 'AuthError', code: 'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED' })
    const message = (caught as Error).message
    expect(message).not.toContain(input.slice(6, 30))
    expect(message).not.toContain(token)
    expect(message).not.toContain(token.slice(13, 30))
    expect(message.split('\n')).toHaveLength(1)
    expect((caught as Error).cause).toBeUndefined()
  })

  test('encode validates too', () => {
    expect(() => encodeJoinToken({ server: 'http://h', token })).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED' }))
    expect(() => encodeJoinToken({ server: 'wss://h', token: 'nope' })).toThrow(expect.objectContaining({ code: 'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED' }))
  })
})
