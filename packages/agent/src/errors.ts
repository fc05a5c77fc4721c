import { SpokelinkError } from '@spokelink/errors'

/** Codes of errors raised by the agent. */
export const AGENT_ERROR_CODES = [
  'SLK_ERR_AGENT_INVALID_OPTION',
  'SLK_ERR_AGENT_UNAUTHORIZED',
  'SLK_ERR_AGENT_FORBIDDEN',
  'SLK_ERR_AGENT_CONNECT',
  'SLK_ERR_AGENT_TLS_PIN',
  'SLK_ERR_AGENT_INSECURE',
  'SLK_ERR_AGENT_HELLO_REJECTED',
  'SLK_ERR_AGENT_STREAM_HEADER',
  'SLK_ERR_AGENT_SERVER_RESTARTING',
  'SLK_ERR_AGENT_STATE_DIR',
  'SLK_ERR_AGENT_CERT_REFUSED',
  'SLK_ERR_AGENT_CERT_TIMEOUT',
  'SLK_ERR_AGENT_RECONFIGURED',
  'SLK_ERR_AGENT_LISTEN',
] as const
/** A value of {@link AGENT_ERROR_CODES}. */
export type AgentErrorCode = typeof AGENT_ERROR_CODES[number]

/** An agent error; messages name the server, upstream or option at fault and never the token. */
export class AgentError extends SpokelinkError<AgentErrorCode> {
  override name = 'AgentError'
}
