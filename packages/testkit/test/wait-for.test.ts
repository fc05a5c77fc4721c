import { describe, expect, test } from 'vitest'
import { waitFor } from '@spokelink/testkit'

describe('waitFor', () => {
  test('resolves with the first truthy value', async () => {
    let calls = 0
    const value = await waitFor(() => {
      calls += 1
      return calls >= 3 ? { calls } : undefined
    }, { what: 'the third call', intervalMs: 1 })
    expect(value).toEqual({ calls: 3 })
  })

  test('treats a throwing check as not yet, and resolves once it stops throwing', async () => {
    let calls = 0
    const value = await waitFor(async () => {
      calls += 1
      if (calls < 3) throw new Error('not yet')
      return 'done'
    }, { what: 'the check to pass', intervalMs: 1 })
    expect(value).toBe('done')
  })

  test('names what never happened when it times out', async () => {
    await expect(waitFor(() => false, { what: 'the moon to turn blue', timeoutMs: 50, intervalMs: 5 }))
      .rejects.toThrow(/^timed out after 50ms waiting for the moon to turn blue$/)
  })

  test('appends the last error the check threw', async () => {
    let calls = 0
    const err = await waitFor(() => { calls += 1; throw new Error(`attempt ${calls} failed`) }, { what: 'x', timeoutMs: 50, intervalMs: 5 })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    // The last error, not the first: at load 16 the 50 ms can pass before a second attempt, so no count is asserted.
    expect((err as Error).message).toBe(`timed out after 50ms waiting for x: last error: attempt ${calls} failed`)
    expect((err as Error).cause).toBeInstanceOf(Error)
  })

  test('gives up on a check that never settles', async () => {
    await expect(waitFor(async () => new Promise<never>(() => {}), { what: 'a hung check', timeoutMs: 50 }))
      .rejects.toThrow('timed out after 50ms waiting for a hung check')
  })

  test('rejects with the reason when aborted', async () => {
    const controller = new AbortController()
    const reason = new Error('test is over')
    const waiting = waitFor(() => false, { what: 'x', signal: controller.signal })
    controller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
  })
})
