/** What the entry point hands each command: the environment and a signal that fires on SIGTERM/SIGINT. */
export interface CommandContext {
  env: Readonly<Record<string, string | undefined>>
  /** Aborted when the process is asked to stop. */
  shutdown: AbortSignal
  /** Reload requests (SIGHUP); a long-running command subscribes to re-read its files. @default none (SIGHUP stops) */
  reload?: ReloadRequests
}

/** Fans a reload request (SIGHUP) out to the commands that subscribed. */
export class ReloadRequests {
  readonly #listeners = new Set<() => void>()

  /** Calls `listener` on every reload request until the returned function is called. */
  subscribe (listener: () => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Delivers one request; false when nobody listens (the caller then treats SIGHUP as a stop, its default). */
  request (): boolean {
    for (const listener of this.#listeners) listener()
    return this.#listeners.size > 0
  }
}

/** Resolves when `signal` aborts. */
export async function untilAborted (signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>((resolve) => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
}
