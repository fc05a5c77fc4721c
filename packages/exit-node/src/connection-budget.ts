/** Limits of a {@link ConnectionBudget}. */
export interface ConnectionBudgetOptions {
  /** Connections held at once, from every source together. */
  maxConnections: number
  /** Connections held at once from one source (see `sourceKeyOf`). */
  maxPerSource: number
}

/** Why a connection got no slot; also the `reason` label of the refusal counter. */
export type ConnectionRefusal = 'unauthenticated_limit' | 'unauthenticated_source_limit'

/** A slot one connection holds until it is released. */
export interface ConnectionSlot {
  readonly source: string
  released: boolean
}

/**
 * Counts the control port's unauthenticated connections (accepted, upgrade not yet accepted), globally and per
 * source, so a flood of idle or slow connections is refused at accept time instead of using up file descriptors.
 * Pure bookkeeping: the exit-node takes a slot on `connection` and releases it on upgrade or close. The per-source
 * map holds only sources with a live connection, so it never has more than `maxConnections` entries.
 */
export class ConnectionBudget {
  readonly #options: Readonly<ConnectionBudgetOptions>
  readonly #perSource = new Map<string, number>()
  #size = 0

  constructor (options: ConnectionBudgetOptions) {
    this.#options = Object.freeze({ ...options })
  }

  /** Takes a slot for a connection from `source`, or says which limit is full. */
  tryTake (source: string): ConnectionSlot | ConnectionRefusal {
    if (this.#size >= this.#options.maxConnections) return 'unauthenticated_limit'
    const held = this.#perSource.get(source) ?? 0
    if (held >= this.#options.maxPerSource) return 'unauthenticated_source_limit'
    this.#perSource.set(source, held + 1)
    this.#size++
    return { source, released: false }
  }

  /** Gives a slot back; idempotent. */
  release (slot: ConnectionSlot): void {
    if (slot.released) return
    slot.released = true
    this.#size--
    const held = (this.#perSource.get(slot.source) ?? 1) - 1
    if (held <= 0) this.#perSource.delete(slot.source)
    else this.#perSource.set(slot.source, held)
  }

  /** Slots held now. */
  get size (): number {
    return this.#size
  }

  /** Sources holding at least one slot now. */
  get sources (): number {
    return this.#perSource.size
  }
}
