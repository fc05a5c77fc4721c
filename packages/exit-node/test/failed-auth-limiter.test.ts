import { describe, expect, test } from 'vitest'
import { FailedAuthLimiter } from '@spokelink/exit-node'

describe('FailedAuthLimiter', () => {
  test('a burst, then retry-after until a token refills, one per refill period', () => {
    const limiter = new FailedAuthLimiter({ burst: 3, refillMs: 1000, maxSources: 100 })
    expect([limiter.charge('a', 0), limiter.charge('a', 0), limiter.charge('a', 0)]).toEqual([0, 0, 0])
    expect(limiter.charge('a', 0)).toBe(1000)
    expect(limiter.charge('a', 400)).toBe(600)
    // Another source has its own bucket.
    expect(limiter.charge('b', 400)).toBe(0)
    expect(limiter.charge('a', 1000)).toBe(0)
    expect(limiter.charge('a', 1000)).toBe(1000)
    // A long quiet spell refills to the burst, never beyond it.
    expect([0, 0, 0, 1000]).toEqual([10_000, 10_000, 10_000, 10_000].map((t) => limiter.charge('a', t)))
  })

  test('remembers at most maxSources: an attacker rotating through 100,000 addresses keeps the map at the cap', () => {
    const limiter = new FailedAuthLimiter({ burst: 1, refillMs: 60_000, maxSources: 1000 })
    for (let i = 0; i < 100_000; i++) limiter.charge(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, i)
    expect(limiter.size).toBe(1000)
  })

  test('evicts the least recently seen source, so a source that keeps failing keeps its empty bucket', () => {
    const limiter = new FailedAuthLimiter({ burst: 1, refillMs: 60_000, maxSources: 3 })
    expect(limiter.charge('attacker', 0)).toBe(0)
    for (let i = 0; i < 10; i++) {
      limiter.charge(`other-${i}`, i)
      // The attacker is seen again between the others, so it is never the oldest.
      expect(limiter.charge('attacker', i)).toBeGreaterThan(0)
    }
  })
})
