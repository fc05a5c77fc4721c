/**
 * A secret pasted into the wrong flag or variable is never echoed: the real `spokelink` bin (run `pnpm build`
 * first) names the flag in its one-line error and shows at most the token id or a short prefix, on stdout and stderr.
 */
import { afterAll, describe, expect, test } from 'vitest'
import { createSpokeToken, encodeJoinToken } from '@spokelink/auth'
import { killAllProcesses, runSpokelink } from '@spokelink/testkit'

const CLEAN_ENV: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((key) => key.startsWith('SPOKELINK_')).map((key) => [key, undefined])
)

afterAll(async () => { await killAllProcesses() })

const good = createSpokeToken()
const pasted = createSpokeToken()
const pastedSecret = pasted.token.slice(`slk_${pasted.id}_`.length)
const joinToken = encodeJoinToken({ server: 'wss://hub.example.com/connect', caSha256: 'c'.repeat(64), token: pasted.token })
const agentBase = ['agent', '--token', good.token, '--upstream', 'prometheus=127.0.0.1:9', '--server', 'ws://127.0.0.1:9/connect']

describe('a token in the wrong place is named, never echoed', () => {
  test.each([
    ['agent --label <token>', [...agentBase, '--label', pasted.token], {}, '--label', `slk_${pasted.id}_…(redacted)`],
    ['agent --server <token>', ['agent', '--token', good.token, '--upstream', 'prometheus=127.0.0.1:9', '--server', pasted.token], {}, '--server', `slk_${pasted.id}_…(redacted)`],
    ['agent --server <join token>', ['agent', '--token', good.token, '--upstream', 'prometheus=127.0.0.1:9', '--server', joinToken], {}, '--server', 'slkj1.…(redacted)'],
    ['agent --keepalive <join token>', [...agentBase, '--keepalive', joinToken], {}, '--keepalive', 'slkj1.…(redacted)'],
    ['agent --upstream <token>', ['agent', '--token', good.token, '--server', 'ws://127.0.0.1:9/connect', '--upstream', pasted.token], {}, 'upstream', `slk_${pasted.id}_`],
    ['server --keepalive <token>', ['server', '--spokes', '/nonexistent/spokes.yaml', '--keepalive', pasted.token], {}, '--keepalive', `slk_${pasted.id}_…(redacted)`],
    ['SPOKELINK_KEEPALIVE=<token> server', ['server', '--spokes', '/nonexistent/spokes.yaml'], { SPOKELINK_KEEPALIVE: pasted.token }, 'SPOKELINK_KEEPALIVE', `slk_${pasted.id}_…(redacted)`],
    ['server --<token> (unknown option)', ['server', `--${pasted.token}`], {}, 'unknown option', '--sl…(redacted)'],
    ['agent --keepalive <bare secret>', [...agentBase, '--keepalive', pastedSecret], {}, '--keepalive', `${pastedSecret.slice(0, 4)}…(redacted)`],
  ] as const)('%s', async (_name, args, env, flag, shown) => {
    const proc = runSpokelink(args, { env: { ...CLEAN_ENV, ...env } })
    const exit = await proc.waitForExit({ timeoutMs: 30_000 })
    const stderr = proc.stderrLines.filter((line) => line !== '')
    const stdout = proc.stdoutLines.filter((line) => line !== '')
    expect(exit, proc.tail()).toEqual({ code: 2, signal: null })
    expect(stderr, proc.tail()).toHaveLength(1)
    expect(stderr[0]).toMatch(/^error: /)
    expect(stderr[0]).toContain(flag)
    expect(stderr[0]).toContain(shown)
    for (const line of [...stderr, ...stdout]) {
      expect(line).not.toContain(pastedSecret)
      expect(line).not.toContain(joinToken.slice(6))
    }
  })
})
