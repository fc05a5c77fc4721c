import { describe, expect, it } from 'vitest'
import { LogHistogram } from '../bench/lib/log-histogram.js'
import { cpuSpent, readCpuSeconds, readTreeCpu } from '../bench/lib/proc-cpu.js'
import { scrapeOffsetMs } from '../bench/lib/fleet-scraper.js'

function cpuMs (usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000
}

describe('bench LogHistogram', () => {
  it('gives percentiles within 1 % of the exact nearest-rank ones, in fixed memory', () => {
    const h = new LogHistogram()
    for (let i = 1; i <= 10_000; i++) h.add(i / 10)
    expect(h.count).toBe(10_000)
    expect(h.percentile(50)).toBeGreaterThanOrEqual(500)
    expect(h.percentile(50)).toBeLessThanOrEqual(505)
    expect(h.percentile(99)).toBeGreaterThanOrEqual(990)
    expect(h.percentile(99)).toBeLessThanOrEqual(1000)
    expect(new LogHistogram().percentile(50)).toBeNaN()
  })
})

describe('bench proc-cpu', () => {
  it('reads this process\'s CPU seconds from /proc and sees them grow with work', async () => {
    const before = await readCpuSeconds(process.pid)
    // Work until Node's own counter says 300 ms of CPU went by (not wall time: the box may be loaded).
    const start = process.cpuUsage()
    let x = 0
    while (cpuMs(process.cpuUsage(start)) < 300) x += Math.sqrt(x + 1)
    expect(x).toBeGreaterThan(0)
    const after = await readCpuSeconds(process.pid)
    // /proc counts in 10 ms ticks and includes the other threads: at least the 300 ms less a tick or two.
    expect(after - before).toBeGreaterThanOrEqual(0.28)
  })

  it('counts only processes present in both readings', () => {
    expect(cpuSpent(new Map([[1, 1], [2, 5]]), new Map([[1, 3], [3, 100]]))).toBe(2)
  })

  it('includes this process in its own tree', async () => {
    const tree = await readTreeCpu([process.pid])
    expect(tree.get(process.pid)).toBeGreaterThan(0)
  })
})

describe('bench fleet scrape offsets', () => {
  it('spread targets over the interval, stable per name', () => {
    const offsets = Array.from({ length: 1000 }, (_, i) => scrapeOffsetMs(`spoke-${String(i).padStart(4, '0')}`, 15_000))
    expect(offsets.every((o) => o >= 0 && o < 15_000)).toBe(true)
    expect(scrapeOffsetMs('spoke-0001', 15_000)).toBe(offsets[1])
    // Every tenth of the interval gets some targets (an even spread would give 100 each).
    const tenths = new Array<number>(10).fill(0)
    for (const o of offsets) {
      const tenth = Math.floor(o / 1500)
      tenths[tenth] = (tenths[tenth] ?? 0) + 1
    }
    expect(Math.min(...tenths)).toBeGreaterThan(50)
  })
})
