import { afterEach, describe, expect, onTestFinished, test, vi } from 'vitest'
import { socketPair } from '@spokelink/testkit'
import { readExactly, readWithin } from '../src/index.js'

afterEach(() => { vi.useRealTimers() })

describe('readWithin', () => {
  test('a read still pending at the deadline destroys the stream with the timeout error, which fails the read', async () => {
    const [ours, theirs] = await socketPair()
    onTestFinished(() => { theirs.destroy() })
    const late = new Error('no answer within 30 ms')
    const read = readWithin(ours, 30, () => late, async () => readExactly(ours, 1))
    await expect(read).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_CLOSED', cause: late })
    expect(ours.destroyed).toBe(true)
  })

  test('a read that settles in time clears the deadline: the stream lives on past it', async () => {
    const [ours, theirs] = await socketPair()
    onTestFinished(() => { ours.destroy(); theirs.destroy() })
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const read = readWithin(ours, 1000, () => new Error('late'), async () => readExactly(ours, 1))
    theirs.write('x')
    expect((await read).toString()).toBe('x')
    vi.advanceTimersByTime(5000)
    expect(ours.destroyed).toBe(false)
  })
})
