import { Writable } from 'node:stream'
import pino from 'pino'
import { describe, expect, test } from 'vitest'
import { LogSampler, clipUntrusted } from '@spokelink/exit-node'

function capture (): { logger: pino.Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>)
      callback()
    },
  })
  return { logger: pino({ level: 'info' }, sink), lines }
}

describe('LogSampler', () => {
  test('one full line per key per interval, then one line with the count of the rest', () => {
    let now = 0
    const { logger, lines } = capture()
    const sampler = new LogSampler({ intervalMs: 1000 }, { now: () => now })
    for (let i = 0; i < 500; i++) sampler.log(logger, 'warn', 'invalid', { remoteAddress: `10.0.0.${i % 250}`, i }, 'agent refused')
    for (let i = 0; i < 3; i++) sampler.log(logger, 'warn', 'missing', { i }, 'agent refused')
    now = 1000
    // The next event after the interval first reports how many the previous one held back.
    sampler.log(logger, 'warn', 'invalid', { i: 500 }, 'agent refused')
    sampler.close()
    expect(lines.map(({ msg, sampleKey, i, repeated }) => ({ msg, sampleKey, i, repeated }))).toEqual([
      { msg: 'agent refused', sampleKey: 'invalid', i: 0, repeated: undefined },
      { msg: 'agent refused', sampleKey: 'missing', i: 0, repeated: undefined },
      { msg: 'agent refused', sampleKey: 'invalid', i: undefined, repeated: 499 },
      { msg: 'agent refused', sampleKey: 'invalid', i: 500, repeated: undefined },
      { msg: 'agent refused', sampleKey: 'missing', i: undefined, repeated: 2 },
    ])
    expect(lines.every((line) => line.level === 40)).toBe(true)
  })

  test('the interval timer reports held-back counts on its own and stops when nothing is pending', async () => {
    const { logger, lines } = capture()
    // The window is judged by the injected clock, so a stalled loop cannot close it early; the real timer only
    // decides when the sampler looks.
    let now = 1_000_000
    const sampler = new LogSampler({ intervalMs: 20 }, { now: () => now })
    for (let i = 0; i < 10; i++) sampler.log(logger, 'info', 'k', {}, 'refused')
    expect(lines).toHaveLength(1)
    now += 20
    await expect.poll(() => lines.length, { timeout: 5000 }).toBe(2)
    expect(lines[1]).toMatchObject({ sampleKey: 'k', repeated: 9, intervalMs: 20 })
    sampler.close()
  })
})

describe('clipUntrusted', () => {
  test('keeps short values and cuts long ones, saying how much was cut', () => {
    expect(clipUntrusted('spokelink.v2', 128)).toBe('spokelink.v2')
    const clipped = clipUntrusted('x'.repeat(15_000), 128)
    expect(clipped).toBe(`${'x'.repeat(128)}…(+14872 chars)`)
  })
})
