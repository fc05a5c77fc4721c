import { describe, expect, test } from 'vitest'
import { Backoff, validateAgentOptions } from '@spokelink/agent'

describe('Backoff', () => {
  test('full jitter: each delay is rng × min(cap, initial·2ⁿ)', () => {
    const backoff = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000 }, { rng: () => 0.999_999, now: () => 0 })
    const delays = Array.from({ length: 8 }, () => backoff.nextDelayMs())
    expect(delays).toEqual([999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999])
  })

  test('the rng spreads a fleet: with rng 0 every retry is immediate', () => {
    const backoff = new Backoff({}, { rng: () => 0, now: () => 0 })
    expect([backoff.nextDelayMs(), backoff.nextDelayMs()]).toEqual([0, 0])
  })

  test('a connection that stayed up a stable minute resets the sequence; a short one does not', () => {
    let now = 0
    const backoff = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, stableAfterMs: 60_000 }, { rng: () => 0.5, now: () => now })
    backoff.nextDelayMs()
    backoff.nextDelayMs()
    backoff.nextDelayMs()
    backoff.connected()
    now += 59_000
    expect(backoff.nextDelayMs()).toBe(4000)
    backoff.connected()
    now += 60_000
    expect(backoff.nextDelayMs()).toBe(500)
  })

  test('a session the server ended on purpose (planned) resets the sequence at once; without a connection it does not', () => {
    let now = 0
    const backoff = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, stableAfterMs: 60_000 }, { rng: () => 0.5, now: () => now })
    backoff.nextDelayMs()
    backoff.nextDelayMs()
    backoff.nextDelayMs()
    // Failed attempts that never connected: planned changes nothing.
    expect(backoff.nextDelayMs({ planned: true })).toBe(4000)
    backoff.connected()
    now += 5000
    // Connected 5 s, then the exit-node's 1001: from the start again (2 s, then 4 s), not 16 s.
    expect(backoff.nextDelayMs({ planned: true })).toBe(1000)
    expect(backoff.nextDelayMs()).toBe(2000)
  })

  test('after a planned close the ceiling stops at plannedMaxDelayMs for plannedWindowMs, then grows on from there', () => {
    let now = 0
    const backoff = new Backoff({ initialDelayMs: 1000, maxDelayMs: 30_000, plannedMaxDelayMs: 5000, plannedWindowMs: 60_000 }, { rng: () => 0.999_999, now: () => now })
    backoff.connected()
    now = 1000
    const inWindow = [backoff.nextDelayMs({ planned: true })]
    for (now = 1000; now < 61_000; now += 4999) inWindow.push(backoff.nextDelayMs())
    now = 60_999
    inWindow.push(backoff.nextDelayMs())
    expect(inWindow).toEqual([1999, 3999, ...Array.from({ length: inWindow.length - 2 }, () => 4999)])
    // The window's last millisecond is over: the usual growth, counting the window's attempts (cap reached).
    now = 61_000
    expect(backoff.nextDelayMs()).toBe(29_999)
  })

  test('the planned ceiling never exceeds maxDelayMs; a crash (not planned) or a new connection opens no window', () => {
    let now = 0
    const fast = new Backoff({ initialDelayMs: 50, maxDelayMs: 200 }, { rng: () => 0.999_999, now: () => now })
    fast.connected()
    expect([fast.nextDelayMs({ planned: true }), fast.nextDelayMs(), fast.nextDelayMs(), fast.nextDelayMs()]).toEqual([99, 199, 199, 199])
    const crash = new Backoff({}, { rng: () => 0.999_999, now: () => now })
    crash.connected()
    now = 120_000
    expect([crash.nextDelayMs(), crash.nextDelayMs(), crash.nextDelayMs(), crash.nextDelayMs()]).toEqual([999, 1999, 3999, 7999])
    const reconnected = new Backoff({}, { rng: () => 0.999_999, now: () => now })
    reconnected.connected()
    reconnected.nextDelayMs({ planned: true })
    reconnected.connected()
    now += 1000
    // A short session after the window was closed by connecting: growth from the attempts so far (1), as before.
    expect(reconnected.nextDelayMs()).toBe(1999)
  })

  test('backoff options must be positive integers (a 0 s restart ceiling would retry in a tight loop)', () => {
    const base = { server: 'ws://127.0.0.1:1/connect', token: 'slk_abcd1234_x', upstreams: [{ name: 'p', host: '127.0.0.1', port: 1 }] }
    expect(validateAgentOptions({ ...base, backoff: { plannedMaxDelayMs: 1 } }).backoff).toEqual({ plannedMaxDelayMs: 1 })
    expect(() => validateAgentOptions({ ...base, backoff: { plannedMaxDelayMs: 0 } }))
      .toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message: 'agent option backoff.plannedMaxDelayMs: expected a positive integer, got 0' }))
    expect(() => validateAgentOptions({ ...base, backoff: { plannedWindowMs: 1.5 } }))
      .toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message: 'agent option backoff.plannedWindowMs: expected a positive integer, got 1.5' }))
  })

  test('a fleet of 1,000 agents after a planned close, exit-node down 10 s: all back 5 s after it listens, never over 1,000 attempts in one second', () => {
    const agents = 1000
    const downMs = 10_000
    const rng = seededRng(12)
    let now = 0
    const retryAt: number[] = []
    const backoffs = Array.from({ length: agents }, () => new Backoff({}, { rng, now: () => now }))
    for (const [i, backoff] of backoffs.entries()) {
      backoff.connected()
      retryAt[i] = backoff.nextDelayMs({ planned: true })
    }
    const attemptsPerSecond = new Map<number, number>()
    let lastBackMs = 0
    for (const [i, backoff] of backoffs.entries()) {
      let at = retryAt[i] ?? 0
      for (;;) {
        now = at
        const second = Math.floor(at / 1000)
        attemptsPerSecond.set(second, (attemptsPerSecond.get(second) ?? 0) + 1)
        if (at >= downMs) break
        at += backoff.nextDelayMs()
      }
      lastBackMs = Math.max(lastBackMs, at)
    }
    expect(lastBackMs - downMs).toBeLessThan(5000)
    expect(Math.max(...attemptsPerSecond.values())).toBeLessThanOrEqual(1000)
    // The first retries spread over two seconds, not one burst, and not over the whole 5 s either (a rolling
    // update's other replica is ready at once).
    expect(new Set(retryAt.map((ms) => Math.floor(ms / 1000)))).toEqual(new Set([0, 1]))
  })
})

/** A deterministic rng (mulberry32), so the fleet arithmetic is the same on every run. */
function seededRng (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}
