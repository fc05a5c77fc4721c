import { setTimeout as delay } from 'node:timers/promises'

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /**
   * Give up after this long. A deadline that only catches a hang: generous, since three test files share two
   * cores and a child process can take seconds to start at load 16.
   * @default 30_000
   */
  timeoutMs?: number
  /**
   * Pause between two checks.
   * @default 20
   */
  intervalMs?: number
  /** What the caller is waiting for, named in the timeout error ("the agent to connect"). */
  what: string
  /** Aborting rejects at once with the signal's reason. */
  signal?: AbortSignal
}

/** Defaults of the optional {@link WaitForOptions}. */
export const WAIT_FOR_DEFAULTS = { timeoutMs: 30_000, intervalMs: 20 } as const satisfies Required<Omit<WaitForOptions, 'what' | 'signal'>>

/** Falsy results mean "not yet". */
type Pending = undefined | null | false | 0 | ''

/**
 * Polls `check` until it returns a truthy value and resolves with that value.
 *
 * A check that throws (or rejects) counts as "not yet", so assertion-style checks work when they end
 * with `return true`: `await waitFor(() => { expect(x).toBe(1); return true }, { what: 'x to be 1' })`.
 * A check returning `undefined`, `null`, `false`, `0` or `''` is polled again. A check that never
 * settles is abandoned at the deadline. This is the only place in testkit that waits on a timer.
 *
 * @throws Error `timed out after <timeoutMs>ms waiting for <what>`, followed by the last error the check
 *   threw, if any; or the signal's reason when aborted.
 */
export async function waitFor<T extends NonNullable<unknown>> (
  check: () => T | Pending | Promise<T | Pending>,
  options: WaitForOptions
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? WAIT_FOR_DEFAULTS.timeoutMs
  const intervalMs = options.intervalMs ?? WAIT_FOR_DEFAULTS.intervalMs
  const { what, signal } = options
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new RangeError(`waitFor: timeoutMs must be a non-negative number, got ${String(timeoutMs)}`)
  if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new RangeError(`waitFor: intervalMs must be a non-negative number, got ${String(intervalMs)}`)

  const deadline = Date.now() + timeoutMs
  // One controller ends both the deadline timer and the pauses between checks.
  const stop = new AbortController()
  const onAbort = (): void => { stop.abort(signal?.reason) }
  signal?.addEventListener('abort', onAbort, { once: true })
  const expired: unique symbol = Symbol('expired')
  const deadlineReached: Promise<typeof expired> = delay(timeoutMs, expired, { signal: stop.signal }).catch(() => expired)
  let lastError: unknown
  let attempts = 0
  try {
    for (;;) {
      signal?.throwIfAborted()
      // At least one check runs, even with timeoutMs 0; none starts after the deadline.
      if (attempts > 0 && Date.now() >= deadline) break
      attempts += 1
      let result: Awaited<T> | Pending | typeof expired
      try {
        result = await Promise.race([Promise.resolve().then(check), deadlineReached])
      } catch (err) {
        lastError = err
        result = undefined
      }
      signal?.throwIfAborted()
      if (result === expired) break
      // Awaited<T> is T here: T is what the check's promise (if any) resolves to.
      if (result) return result as T
      const remainingMs = deadline - Date.now()
      if (remainingMs <= 0) break
      try {
        await delay(Math.min(intervalMs, remainingMs), undefined, { signal: stop.signal })
      } catch {
        // Aborted by the caller's signal: throwIfAborted() at the top of the loop rethrows its reason.
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    stop.abort()
  }
  const suffix = lastError === undefined ? '' : `: last error: ${errorMessage(lastError)}`
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${suffix}`, lastError === undefined ? undefined : { cause: lastError })
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
