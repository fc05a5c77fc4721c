import type { RunningProcess } from '@spokelink/testkit'

/** Longest timer Node accepts: "wait for as long as the work takes". */
const FOREVER_MS = 2 ** 31 - 1

/**
 * Resolves like `work`, but rejects at once, with the tail of its output, when one of `children` exits first, so a
 * client that gave up does not leave the caller polling until its own timeout.
 */
export async function unlessExited<T> (children: readonly RunningProcess[], work: Promise<T>): Promise<T> {
  const stop = new AbortController()
  const exits = children.map(async (child): Promise<never> => {
    const exit = await child.waitForExit({ timeoutMs: FOREVER_MS, signal: stop.signal })
    const how = exit.signal === null ? `code ${String(exit.code)}` : `signal ${exit.signal}`
    throw new Error(`${child.name} exited with ${how}: ${child.tail(3).replace(/\n/g, ' | ')}`)
  })
  try {
    return await Promise.race([work, ...exits])
  } finally {
    stop.abort()
  }
}
