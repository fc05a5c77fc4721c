import { describe, expect, test } from 'vitest'
import { fitPortCaps } from '../src/port-caps.js'

describe('fitPortCaps', () => {
  test('caps that fit the budget are kept as they are', () => {
    expect(fitPortCaps([256, 256, 256], 1023)).toEqual([256, 256, 256])
    expect(fitPortCaps([3, 1], 4)).toEqual([3, 1])
  })

  test('caps over the budget are split max-min fair: a small cap is kept, the big ones share the rest', () => {
    expect(fitPortCaps([256, 256, 256, 256], 1023)).toEqual([255, 256, 256, 256])
    expect(fitPortCaps([1000, 100], 1023)).toEqual([923, 100])
    expect(fitPortCaps([3, 256], 4)).toEqual([2, 2])
    expect(fitPortCaps([256, 256], 4)).toEqual([2, 2])
  })

  test('the fitted caps never add up to more than the budget while each port gets at least one', () => {
    for (const caps of [[5, 5, 5], [1, 1000, 1000, 7], [2 ** 31, 2 ** 31], [10, 1, 1, 1, 1]]) {
      for (const budget of [3, 4, 7, 100, 1023]) {
        const fitted = fitPortCaps(caps, budget)
        const sum = fitted.reduce((a, b) => a + b, 0)
        if (caps.length <= budget) expect(sum).toBeLessThanOrEqual(budget)
        fitted.forEach((cap, i) => {
          expect(cap).toBeGreaterThanOrEqual(1)
          expect(cap).toBeLessThanOrEqual(caps[i] ?? 0)
        })
      }
    }
  })
})
