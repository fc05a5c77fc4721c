import { describe, expect, test } from 'vitest'
import { createManualClock } from '@spokelink/testkit'
import { FLAG, FRAME_TYPE } from '../src/mux/frame.js'
import type { FrameType } from '../src/mux/frame.js'
import { Pinger } from '../src/mux/pinger.js'

interface SentFrame { type: FrameType, flags: number, streamId: number, length: number }

function setup (pingTimeoutMs = 10_000): { pinger: Pinger, clock: ReturnType<typeof createManualClock>, sent: SentFrame[], rtts: number[] } {
  const clock = createManualClock()
  const sent: SentFrame[] = []
  const rtts: number[] = []
  const sink = { sendFrame: (type: FrameType, flags: number, streamId: number, length: number) => { sent.push({ type, flags, streamId, length }) } }
  return { pinger: new Pinger(sink, clock, pingTimeoutMs, (rtt) => { rtts.push(rtt) }), clock, sent, rtts }
}

describe('Pinger on an injected clock', () => {
  test('sends PING SYN with a fresh opaque id and resolves with the round-trip time of its answer', async () => {
    const { pinger, clock, sent, rtts } = setup()
    const first = pinger.ping()
    const second = pinger.ping()
    expect(sent).toEqual([
      { type: FRAME_TYPE.PING, flags: FLAG.SYN, streamId: 0, length: 0 },
      { type: FRAME_TYPE.PING, flags: FLAG.SYN, streamId: 0, length: 1 },
    ])
    clock.advance(42)
    pinger.handleAnswer(1)
    clock.advance(8)
    pinger.handleAnswer(0)
    expect(await second).toBe(42)
    expect(await first).toBe(50)
    expect(rtts).toEqual([42, 50])
    expect(pinger.rttMs).toBe(50)
    expect(clock.pendingTimers).toBe(0)
  })

  test('an unanswered ping rejects with SLK_ERR_MUX_PING_TIMEOUT after its timeout; a late answer is ignored', async () => {
    const { pinger, clock, rtts } = setup(10_000)
    const defaultTimeout = pinger.ping()
    const shortTimeout = pinger.ping({ timeoutMs: 500 })
    clock.advance(500)
    await expect(shortTimeout).rejects.toMatchObject({ code: 'SLK_ERR_MUX_PING_TIMEOUT', message: 'peer did not answer ping 1 within 500 ms' })
    clock.advance(9499)
    pinger.handleAnswer(1)
    expect(rtts).toEqual([])
    clock.advance(1)
    await expect(defaultTimeout).rejects.toMatchObject({ code: 'SLK_ERR_MUX_PING_TIMEOUT' })
    pinger.handleAnswer(0)
    expect(pinger.rttMs).toBeUndefined()
  })

  test('an aborted ping rejects with the signal reason and forgets its timer; rejectAll rejects the rest', async () => {
    const { pinger, clock } = setup()
    const ac = new AbortController()
    const aborted = pinger.ping({ signal: ac.signal })
    const pending = pinger.ping()
    ac.abort(new Error('caller gave up'))
    await expect(aborted).rejects.toThrow('caller gave up')
    expect(clock.pendingTimers).toBe(1)
    pinger.rejectAll(new Error('session closed'))
    await expect(pending).rejects.toThrow('session closed')
    expect(clock.pendingTimers).toBe(0)
  })
})
