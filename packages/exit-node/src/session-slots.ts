import type { SpokesConfig } from '@spokelink/auth'

/**
 * The session cap of `spoke`: its own `maxSessions`, else the file's `maxSessionsPerSpoke`, else `fallback`
 * (the exit-node option). Read at every upgrade, so a reloaded spokes file applies to the next session.
 */
export function maxSessionsOf (spokes: SpokesConfig, spoke: string, fallback: number): number {
  const entry = spokes.spokes.find((candidate) => candidate.name === spoke)
  return entry?.maxSessions ?? spokes.maxSessionsPerSpoke ?? fallback
}

/**
 * Counts each spoke's sessions from the accepted upgrade until the socket closes (hello included), so the cap
 * holds when many agents upgrade at once with one token, before any of them is registered.
 */
export class SessionSlots {
  readonly #bySpoke = new Map<string, number>()

  /** Takes a slot for `spoke` unless it already has `max`. */
  tryTake (spoke: string, max: number): boolean {
    const held = this.#bySpoke.get(spoke) ?? 0
    if (held >= max) return false
    this.#bySpoke.set(spoke, held + 1)
    return true
  }

  /** Gives one slot of `spoke` back; call once per successful {@link tryTake}. */
  release (spoke: string): void {
    const held = (this.#bySpoke.get(spoke) ?? 1) - 1
    if (held <= 0) this.#bySpoke.delete(spoke)
    else this.#bySpoke.set(spoke, held)
  }

  /** Slots `spoke` holds now. */
  count (spoke: string): number {
    return this.#bySpoke.get(spoke) ?? 0
  }
}
