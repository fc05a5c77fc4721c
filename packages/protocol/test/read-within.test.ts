import { describe, expect, onTestFinished, test } from 'vitest'
import { createManualClock, socketPair } from '@spokelink/testkit'
import { readExactlyThen } from '../src/read-exactly.js'
import { readWithin } from '../src/read-within.js'

/** readWithin around a one-byte read, as a promise of what its `done` got. */
async function readOneByteWithin (stream: Parameters<typeof readWithin>[0], timeoutMs: number, timeoutError: () => Error, clock: Parameters<typeof readWithin>[3]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    readWithin<Buffer>(stream, timeoutMs, timeoutError, clock, (read) => readExactlyThen(stream, 1, read), (err, bytes) => {
      if (err === undefined) resolve(bytes)
      else reject(err)
    })
  })
}

describe('readWithin', () => {
  test('a read still pending at the deadline destroys the stream with the timeout error, which fails the read', async () => {
    const [ours, theirs] = await socketPair()
    onTestFinished(() => { theirs.destroy() })
    const clock = createManualClock()
    const late = new Error('no answer within 30 ms')
    const read = readOneByteWithin(ours, 30, () => late, clock)
    clock.advance(29)
    expect(ours.destroyed).toBe(false)
    clock.advance(1)
    await expect(read).rejects.toMatchObject({ code: 'SLK_ERR_PROTO_CLOSED', cause: late })
    expect(ours.destroyed).toBe(true)
  })

  test('a read that settles in time clears the deadline: the stream lives on past it', async () => {
    const [ours, theirs] = await socketPair()
    onTestFinished(() => { ours.destroy(); theirs.destroy() })
    const clock = createManualClock()
    const read = readOneByteWithin(ours, 1000, () => new Error('late'), clock)
    theirs.write('x')
    expect((await read).toString()).toBe('x')
    clock.advance(5000)
    expect(ours.destroyed).toBe(false)
  })
})
