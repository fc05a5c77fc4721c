import { describe, expect, test } from 'vitest'
import { createManualClock } from '@spokelink/testkit'
import { OpenDeadlines } from '../src/mux/open-deadlines.js'

describe('OpenDeadlines on an injected clock', () => {
  test('each item expires timeoutMs after it was added, oldest first, with one timer for all; an answered one never does', () => {
    const clock = createManualClock()
    const expired: Array<[string, number]> = []
    const deadlines = new OpenDeadlines<string>(1000, clock, (item) => { expired.push([item, clock.now()]) })
    deadlines.add('a')
    clock.advance(300)
    deadlines.add('b')
    deadlines.add('c')
    clock.advance(200)
    deadlines.add('d')
    expect(clock.pendingTimers).toBe(1)
    deadlines.delete('b')
    clock.advance(499)
    expect(expired).toEqual([])
    clock.advance(1)
    expect(expired).toEqual([['a', 1000]])
    clock.advance(1000)
    expect(expired).toEqual([['a', 1000], ['c', 1300], ['d', 1500]])
    expect(deadlines.size).toBe(0)
    expect(clock.pendingTimers).toBe(0)
  })

  test('an item added after the oldest was answered expires at its own deadline, not when the timer armed for the answered one fires', () => {
    // The fleet bench's "socket hang up": a scrape's stream, opened 20 s after an answered one, was reset 10 s later.
    const clock = createManualClock()
    const expired: Array<[string, number]> = []
    const deadlines = new OpenDeadlines<string>(30_000, clock, (item) => { expired.push([item, clock.now()]) })
    deadlines.add('answered')
    deadlines.delete('answered')
    clock.advance(20_000)
    deadlines.add('pending')
    clock.advance(10_000)
    expect(expired).toEqual([])
    expect(deadlines.size).toBe(1)
    clock.advance(19_999)
    expect(expired).toEqual([])
    clock.advance(1)
    expect(expired).toEqual([['pending', 50_000]])
    expect(clock.pendingTimers).toBe(0)
  })

  test('timeoutMs 0 disables deadlines; clear() drops them and the timer', () => {
    const clock = createManualClock()
    const expired: string[] = []
    const off = new OpenDeadlines<string>(0, clock, (item) => { expired.push(item) })
    off.add('a')
    expect(off.size).toBe(0)
    const on = new OpenDeadlines<string>(1000, clock, (item) => { expired.push(item) })
    on.add('b')
    on.clear()
    expect(clock.pendingTimers).toBe(0)
    clock.advance(5000)
    expect(expired).toEqual([])
  })
})
