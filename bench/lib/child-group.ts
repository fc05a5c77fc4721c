import type { RunningProcess } from '@spokelink/testkit'
import type { RunningSystem, StartedSystem } from '../systems/system.js'
import { unlessExited } from './unless-exited.js'

/** The child processes of one system under test: started in order, killed in reverse (a client before its server). */
export class ChildGroup {
  readonly #children: RunningProcess[] = []

  /** Adds a started child and returns it. */
  add (child: RunningProcess): RunningProcess {
    this.#children.push(child)
    return child
  }

  /** Resolves like `work`, or rejects with its output as soon as one of the children exits. */
  async until<T> (work: Promise<T>): Promise<T> {
    return unlessExited(this.#children, work)
  }

  async close (): Promise<void> {
    for (const child of [...this.#children].reverse()) await child.kill()
  }
}

/**
 * Runs `start`, whose system closes every child it added; when `start` fails, those children are killed
 * before the error goes on, so a system that never came up leaves no process behind.
 */
export async function startChildren (start: (group: ChildGroup) => Promise<Omit<RunningSystem, 'close'>>): Promise<StartedSystem> {
  const group = new ChildGroup()
  try {
    const running = await start(group)
    return { running: { ...running, close: async () => { await group.close() } } }
  } catch (err) {
    await group.close()
    throw err
  }
}
