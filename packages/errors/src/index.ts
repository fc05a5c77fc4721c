/**
 * @packageDocumentation
 * The one base of every spokelink error. It has no dependencies, so every package (protocol and auth
 * at the bottom included) can extend it without an import cycle; each package keeps its own
 * `errors.ts` with its class and exports its runtime code list (`XXX_ERROR_CODES`).
 *
 * @example
 * ```ts
 * export const AGENT_ERROR_CODES = ['SLK_ERR_AGENT_CONNECT'] as const
 * export class AgentError extends SpokelinkError<typeof AGENT_ERROR_CODES[number]> {
 *   override name = 'AgentError'
 * }
 * if (isSpokelinkError(err, 'SLK_ERR_AGENT_CONNECT')) retry()
 * ```
 */
export { SpokelinkError, isSpokelinkError } from './spokelink-error.js'
