/**
 * Fuzzing of the auth package's parsers of untrusted text: the join-token decoder (pasted by a user, from anywhere)
 * and the spokes-file parser (edited by hand). For any input the outcome is a value or an error whose `code` starts
 * with `SLK_ERR_`; nothing else is thrown, and the calls are synchronous, so a hang would stop the file's timeout.
 */
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { JOIN_TOKEN_PREFIX, createSpokeToken, decodeJoinToken, encodeJoinToken, parseSpokesConfig } from '../src/index.js'

/** Runs per property; the whole file stays within a few seconds. */
const RUNS = 2000

function outcomeOf (parse: () => unknown): string {
  try {
    parse()
    return 'ok'
  } catch (err) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : ''
    if (!code.startsWith('SLK_ERR_')) throw new Error(`untyped error escaped: ${String(err)}`, { cause: err })
    return code
  }
}

const spoke = createSpokeToken()
const secret = spoke.token.slice(`slk_${spoke.id}_`.length)
const validJoin = encodeJoinToken({ server: 'wss://hub.example.com/connect', caSha256: 'ab'.repeat(32), token: spoke.token })

describe('decodeJoinToken takes any string', () => {
  const trickyKey = fc.constantFrom('server', 'token', 'caSha256', '__proto__', 'toString', 'constructor')
  const jsonish = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.constant(spoke.token), fc.constant('wss://h/connect'), tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 3 }),
    object: fc.dictionary(fc.oneof(fc.string(), trickyKey), tie('value'), { maxKeys: 4 }),
  })).value
  const candidate = fc.oneof(
    fc.string(),
    fc.string().map((s) => JOIN_TOKEN_PREFIX + s),
    fc.stringMatching(/^[A-Za-z0-9_-]{0,200}$/).map((s) => JOIN_TOKEN_PREFIX + s),
    jsonish.map((value) => JOIN_TOKEN_PREFIX + Buffer.from(JSON.stringify(value) ?? '', 'utf8').toString('base64url')),
    // The valid token with characters replaced, cut or appended.
    fc.tuple(fc.array(fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 1 })), { maxLength: 3 }), fc.integer({ min: -20, max: 20 }))
      .map(([edits, resize]) => {
        const chars = [...validJoin]
        for (const [at, ch] of edits) chars[at % chars.length] = ch
        const text = chars.join('')
        return resize < 0 ? text.slice(0, text.length + resize) : text + 'A'.repeat(resize)
      })
  )

  test('a join token or SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED, whose message never holds the secret', () => {
    fc.assert(fc.property(candidate, (text) => {
      let message = ''
      const code = outcomeOf(() => {
        try {
          decodeJoinToken(text)
        } catch (err) {
          message = err instanceof Error ? err.message : ''
          throw err
        }
      })
      expect(['ok', 'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED']).toContain(code)
      expect(message).not.toContain(secret)
    }), { numRuns: RUNS })
  })

  test('the unmutated token decodes (the property can tell ok from malformed)', () => {
    expect(decodeJoinToken(validJoin).token).toBe(spoke.token)
  })
})

describe('parseSpokesConfig takes any text', () => {
  const SHA = 'a'.repeat(64)
  const VALID = [
    'spokes:',
    '  - name: orion-aws',
    '    labels: {cluster: orion-aws, env: prod}',
    '    tokens:',
    `      - {id: 8f3k2a, sha256: "${SHA}", expires: "2027-01-01T00:00:00Z"}`,
    '      - id: 9g4l3b',
    `        sha256: ${SHA}`,
    '        revoked: true',
    '    ports:',
    '      - {upstream: prometheus, listen: "0.0.0.0:19090"}',
    '      - {upstream: alertmanager, listen: "[::1]:19093"}',
    '',
  ]
  // YAML syntax, the file's own keys, and the YAML features a hand-edited file might stumble into.
  const piece = fc.constantFrom(
    'spokes:', 'name:', 'labels:', 'tokens:', 'ports:', 'id:', 'sha256:', 'expires:', 'created:', 'revoked:', 'upstream:', 'listen:',
    '\n', '\n  ', '\n    ', ' ', '- ', ': ', '{', '}', '[', ']', ',', '"', '\'', '#', '? ', '|', '>', '~', '&a ', '*a', '<<: *a', '---\n', '...\n',
    '%YAML 1.1\n---\n', '!!binary ', '!!set ', '!!omap ', '!!timestamp ', '!!int ', '!!float ', '!!str ', '!!map ', '!custom ',
    'null', 'true', '0x1f', '1e400', '-.inf', '.nan', '2027-01-01', '2027-02-30T25:00:00Z', 'orion', 'prometheus', SHA, '8f3k2a',
    '0.0.0.0:19090', '[::1]:9', '127.0.0.1:0', ':65536', 'toString', '__proto__', 'constructor', spoke.token, '\t', '\u00a0', '\ufeff'
  )
  const yamlish = fc.array(fc.oneof({ weight: 5, arbitrary: piece }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) }), { maxLength: 40 }).map((parts) => parts.join(''))
  const mutatedValid = fc.array(fc.record({ line: fc.nat(), op: fc.constantFrom('drop', 'dup', 'insert', 'replace', 'cut'), text: piece }), { minLength: 1, maxLength: 4 })
    .map((edits) => {
      const lines = [...VALID]
      for (const { line, op, text } of edits) {
        const at = line % lines.length
        const current = lines[at] ?? ''
        if (op === 'drop') lines.splice(at, 1)
        else if (op === 'dup') lines.splice(at, 0, current)
        else if (op === 'insert') lines.splice(at, 0, `    ${text}`)
        else if (op === 'replace') lines[at] = current.replace(/[^ ]+/, text)
        else lines[at] = current.slice(0, line % (current.length + 1))
      }
      return lines.join('\n')
    })

  const outcomes = new Map<string, number>()
  function check (text: string): void {
    const code = outcomeOf(() => parseSpokesConfig(text, 'spokes.yaml'))
    expect(code === 'ok' || code.startsWith('SLK_ERR_CONFIG_')).toBe(true)
    outcomes.set(code, (outcomes.get(code) ?? 0) + 1)
  }

  test('a config or SLK_ERR_CONFIG_*: arbitrary text', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), check), { numRuns: RUNS })
  })

  test('a config or SLK_ERR_CONFIG_*: YAML-ish text', () => {
    fc.assert(fc.property(yamlish, check), { numRuns: RUNS })
  })

  test('a config or SLK_ERR_CONFIG_*: a valid file with lines dropped, repeated, replaced or cut', () => {
    fc.assert(fc.property(mutatedValid, check), { numRuns: RUNS })
    // Some mutations keep the file valid and most do not: the property saw both sides.
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(0)
    expect(outcomes.get('SLK_ERR_CONFIG_SPOKES_FILE') ?? 0).toBeGreaterThan(0)
  })

  test('an alias bomb is refused, not expanded', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]', 'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]', 'spokes: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]'].join('\n')
    expect(outcomeOf(() => parseSpokesConfig(bomb, 'spokes.yaml'))).toBe('SLK_ERR_CONFIG_SPOKES_FILE')
  })
})
