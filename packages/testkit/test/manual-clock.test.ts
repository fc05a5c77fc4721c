import { describe, expect, test } from 'vitest'
import { createManualClock } from '@spokelink/testkit'

describe('createManualClock', () => {
  test('runs due timers in due order within advance(), never before', () => {
    const clock = createManualClock()
    const fired: string[] = []
    clock.setTimeout(() => fired.push('b@30'), 30)
    clock.setTimeout(() => fired.push('a@10'), 10)
    const cancel = clock.setTimeout(() => fired.push('cancelled'), 20)
    cancel()
    expect(clock.pendingTimers).toBe(2)
    clock.advance(9)
    expect(fired).toEqual([])
    expect(clock.now()).toBe(9)
    clock.advance(1)
    expect(fired).toEqual(['a@10'])
    clock.advance(100)
    expect(fired).toEqual(['a@10', 'b@30'])
    expect(clock.pendingTimers).toBe(0)
  })

  test('a timer set by a timer that is already due runs in the same advance', () => {
    const clock = createManualClock()
    const fired: number[] = []
    clock.setTimeout(() => {
      fired.push(clock.now())
      clock.setTimeout(() => fired.push(clock.now()), 0)
    }, 5)
    clock.advance(5)
    expect(fired).toEqual([5, 5])
  })
})
