import { describe, expect, test } from 'vitest'
import { Backoff } from '@spokelink/agent'

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
    // Connected 5 s, then the exit-node's 1001: back to the first delay, not 16 s.
    expect(backoff.nextDelayMs({ planned: true })).toBe(500)
    expect(backoff.nextDelayMs()).toBe(1000)
  })
})
