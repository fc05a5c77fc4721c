import { describe, expect, test } from 'vitest'
import { EventSampler } from '../src/event-sampler.js'

describe('EventSampler', () => {
  test('reports the first event at once, then at most once per interval with the count since the last report', () => {
    let now = 1000
    const sampler = new EventSampler(10_000, () => now)
    expect(sampler.record()).toBe(1)
    const quiet = Array.from({ length: 500 }, () => sampler.record())
    expect(quiet.every((count) => count === undefined)).toBe(true)
    now += 9_999
    expect(sampler.record()).toBeUndefined()
    now += 1
    expect(sampler.record()).toBe(502)
    now += 60_000
    expect(sampler.record()).toBe(1)
  })
})
