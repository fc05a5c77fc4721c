import { describe, expect, test } from 'vitest'
import { ConnectionBudget, sourceKeyOf } from '@spokelink/exit-node'

describe('ConnectionBudget', () => {
  test('refuses past the per-source cap, then past the global cap, and takes slots again once released', () => {
    const budget = new ConnectionBudget({ maxConnections: 5, maxPerSource: 3 })
    const a = [budget.tryTake('a'), budget.tryTake('a'), budget.tryTake('a')]
    expect(budget.tryTake('a')).toBe('unauthenticated_source_limit')
    const b = [budget.tryTake('b'), budget.tryTake('b')]
    expect(budget.tryTake('c')).toBe('unauthenticated_limit')
    expect(budget.size).toBe(5)
    const [first] = a
    if (typeof first !== 'object') throw new Error('expected a slot')
    budget.release(first)
    budget.release(first)
    expect(budget.size).toBe(4)
    expect(typeof budget.tryTake('a')).toBe('object')
    for (const slot of [...a.slice(1), ...b]) {
      if (typeof slot === 'object') budget.release(slot)
    }
    expect(budget.size).toBe(1)
    expect(budget.sources).toBe(1)
  })

  test('keeps no entry for a source without a live connection, so 100,000 sources leave nothing behind', () => {
    const budget = new ConnectionBudget({ maxConnections: 10, maxPerSource: 1 })
    let refused = 0
    for (let i = 0; i < 100_000; i++) {
      const slot = budget.tryTake(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`)
      if (typeof slot === 'string') refused++
      else budget.release(slot)
    }
    expect(refused).toBe(0)
    expect(budget.size).toBe(0)
    expect(budget.sources).toBe(0)
  })
})

describe('sourceKeyOf', () => {
  test('IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
    expect(sourceKeyOf('192.0.2.7')).toBe('192.0.2.7')
    expect(sourceKeyOf('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(sourceKeyOf('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64')
    expect(sourceKeyOf('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64')
    expect(sourceKeyOf('2001:0db8:0001:0002:0:0:0:9')).toBe('2001:db8:1:2::/64')
    expect(sourceKeyOf('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64')
    expect(sourceKeyOf('2001:db8::1')).toBe('2001:db8:0:0::/64')
    expect(sourceKeyOf('::1')).toBe('0:0:0:0::/64')
    expect(sourceKeyOf('fe80::1%eth0')).toBe('fe80:0:0:0::/64')
    expect(sourceKeyOf(undefined)).toBe('unknown')
    expect(sourceKeyOf('not an address')).toBe('unknown')
  })
})
