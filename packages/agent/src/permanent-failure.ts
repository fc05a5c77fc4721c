/** Codes of refusals that retrying cannot fix: an operator must issue a token, fix the pin or upgrade a side. */
const PERMANENT_CODES = new Set([
  'SLK_ERR_AGENT_UNAUTHORIZED',
  'SLK_ERR_AGENT_FORBIDDEN',
  'SLK_ERR_AGENT_TLS_PIN',
  'SLK_ERR_PROTO_VERSION_MISMATCH',
])

/** The agent's "this will not fix itself" state: the code and message of the refusal. */
export interface PermanentFailure {
  code: string
  reason: string
}

/** The error's `code` when it has a string one. */
export function errorCode (err: Error | undefined): string | undefined {
  return err !== undefined && 'code' in err && typeof err.code === 'string' ? err.code : undefined
}

/**
 * Whether `err` is a refusal only an operator can fix (a revoked or invalid token, a CA pin mismatch, a protocol
 * version the other side does not speak); the agent then backs off towards `permanentFailureMaxDelayMs`.
 */
export function permanentFailureOf (err: Error | undefined): PermanentFailure | undefined {
  const code = errorCode(err)
  if (err === undefined || code === undefined || !PERMANENT_CODES.has(code)) return undefined
  return { code, reason: err.message }
}
