/**
 * The one base of every spokelink error (undici's `UndiciError`, fastify's `FastifyError`): a `code` from
 * its package's closed list, a one-line message, and `cause` when wrapping. Callers match on `err.code`,
 * never on the message or the class.
 */
export class SpokelinkError<Code extends string = string> extends Error {
  override name = 'SpokelinkError'
  readonly code: Code
  constructor (code: Code, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** Whether `err` is a spokelink error, optionally with one of `codes`. */
export function isSpokelinkError (err: unknown, ...codes: string[]): err is SpokelinkError {
  return err instanceof SpokelinkError && (codes.length === 0 || codes.includes(err.code))
}
