import { describe, expect, onTestFinished, test } from 'vitest'
import { createManualClock } from '@spokelink/testkit'
import type { ManualClock } from '@spokelink/testkit'
import type { MuxError } from '../src/index.js'
import { Keepalive } from '../src/mux/keepalive.js'

const INTERVAL = 15_000
const TIMEOUT = 2 * INTERVAL

/** A keepalive on a manual clock; pings are recorded and answered only when the test says so. */
function setup (options = { keepaliveIntervalMs: INTERVAL, keepaliveTimeoutMs: TIMEOUT }): {
  clock: ManualClock
  keepalive: Keepalive
  pingsAt: number[]
  answerPing: () => void
  dead: MuxError[]
} {
  const clock = createManualClock()
  const pingsAt: number[] = []
  const answers: Array<() => void> = []
  const dead: MuxError[] = []
  const keepalive = new Keepalive(options, clock, async () => {
    pingsAt.push(clock.now())
    await new Promise<void>((resolve) => { answers.push(resolve) })
  }, (err) => { dead.push(err) })
  onTestFinished(() => { keepalive.stop() })
  const answerPing = (): void => {
    // A pong is bytes from the peer like any other.
    keepalive.heard()
    answers.shift()?.()
  }
  return { clock, keepalive, pingsAt, answerPing, dead }
}

/** Lets the keepalive see a settled ping promise (its handlers run as microtasks). */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await Promise.resolve()
}

describe('Keepalive on an injected clock', () => {
  test('a peer that never sends is pinged every interval and declared dead keepaliveTimeoutMs (2 × interval) after start', () => {
    const { clock, pingsAt, dead } = setup()
    clock.advance(TIMEOUT - 1)
    expect(pingsAt).toEqual([INTERVAL])
    expect(dead).toEqual([])
    clock.advance(1)
    expect(dead).toHaveLength(1)
    expect(dead[0]).toMatchObject({ name: 'MuxError', code: 'SLK_ERR_MUX_KEEPALIVE_TIMEOUT' })
    expect(dead[0]?.message).toContain(`peer sent nothing for ${TIMEOUT} ms`)
  })

  test('a peer that goes silent right after answering a ping is declared dead within 2 × interval of its last frame', async () => {
    const { clock, pingsAt, answerPing, dead } = setup()
    clock.advance(INTERVAL)
    expect(pingsAt).toEqual([INTERVAL])
    clock.advance(100)
    answerPing()
    await settle()
    const lastHeardAt = clock.now()
    // Before the fix the deadline ran from the next ping: 15 s later plus a 30 s ping timeout.
    clock.advance(TIMEOUT - 1)
    expect(dead).toEqual([])
    clock.advance(1)
    expect(dead.map((e) => e.code)).toEqual(['SLK_ERR_MUX_KEEPALIVE_TIMEOUT'])
    expect(clock.now() - lastHeardAt).toBe(2 * INTERVAL)
    expect(pingsAt).toEqual([INTERVAL, 2 * INTERVAL])
  })

  test('a peer that keeps sending data but answers pings late is never declared dead', async () => {
    const { clock, keepalive, pingsAt, answerPing, dead } = setup()
    // Ten minutes of data every second; every pong comes 40 s late, past keepaliveTimeoutMs.
    for (let second = 1; second <= 600; second++) {
      clock.advance(1000)
      keepalive.heard()
      if (pingsAt.length > 0 && clock.now() - (pingsAt.at(-1) ?? 0) === 40_000) answerPing()
      await settle()
    }
    expect(dead).toEqual([])
    // One ping in flight at a time: a new one only after the late answer.
    expect(pingsAt.slice(0, 3)).toEqual([15_000, 60_000, 105_000])
    // Then the peer stops: dead exactly keepaliveTimeoutMs after its last bytes.
    const lastHeardAt = clock.now()
    clock.advance(TIMEOUT)
    expect(dead.map((e) => e.code)).toEqual(['SLK_ERR_MUX_KEEPALIVE_TIMEOUT'])
    expect(clock.now() - lastHeardAt).toBe(TIMEOUT)
  })

  test('a live idle peer survives a timeout shorter than the interval: pings go out every half timeout', async () => {
    const { clock, pingsAt, answerPing, dead } = setup({ keepaliveIntervalMs: 15_000, keepaliveTimeoutMs: 10_000 })
    for (let i = 0; i < 20; i++) {
      clock.advance(5000)
      answerPing()
      await settle()
    }
    expect(dead).toEqual([])
    expect(pingsAt.slice(0, 3)).toEqual([5000, 10_000, 15_000])
  })

  test('stop() cancels the timer: no verdict afterwards', () => {
    const { clock, keepalive, dead } = setup()
    keepalive.stop()
    expect(clock.pendingTimers).toBe(0)
    clock.advance(10 * TIMEOUT)
    expect(dead).toEqual([])
  })
})
