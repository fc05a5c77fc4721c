/** What the entry point hands each command: the environment and a signal that fires on SIGTERM/SIGINT. */
export interface CommandContext {
  env: Readonly<Record<string, string | undefined>>
  /** Aborted when the process is asked to stop. */
  shutdown: AbortSignal
}

/** Resolves when `signal` aborts. */
export async function untilAborted (signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>((resolve) => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
}
