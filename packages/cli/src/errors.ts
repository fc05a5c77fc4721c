import { SpokelinkError } from '@spokelink/errors'

/** Codes of errors raised by the command line; usage and configuration ones exit with status 2, the rest 1. */
export const CLI_ERROR_CODES = [
  'SLK_ERR_CLI_STATUS_FETCH',
  'SLK_ERR_USAGE_FLAG',
  'SLK_ERR_USAGE_MISSING',
  'SLK_ERR_USAGE_CONFLICT',
  'SLK_ERR_CONFIG_FILE',
  'SLK_ERR_CONFIG_READ',
  'SLK_ERR_CONFIG_TLS',
  'SLK_ERR_CONFIG_KUBERNETES',
] as const
/** A value of {@link CLI_ERROR_CODES}. */
export type CliErrorCode = typeof CLI_ERROR_CODES[number]

/** A usage or configuration error; the message names the flag, its source and what was expected. */
export class CliError extends SpokelinkError<CliErrorCode> {
  override name = 'CliError'
}

/** Exit status for an error: 2 for usage and configuration mistakes, 1 for everything else. */
export function exitCodeOf (err: unknown): number {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : ''
  const usage = code.startsWith('SLK_ERR_USAGE_') || code.startsWith('SLK_ERR_CONFIG_') ||
    code.endsWith('_INVALID_OPTION') || code === 'SLK_ERR_AGENT_INSECURE' || code === 'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED' ||
    code === 'SLK_ERR_AUTH_TOKEN_MALFORMED'
  return usage ? 2 : 1
}
