/** Codes of errors raised by the agent. */
export type AgentErrorCode =
  | 'SLK_ERR_AGENT_INVALID_OPTION'
  | 'SLK_ERR_AGENT_UNAUTHORIZED'
  | 'SLK_ERR_AGENT_FORBIDDEN'
  | 'SLK_ERR_AGENT_CONNECT'
  | 'SLK_ERR_AGENT_TLS_PIN'
  | 'SLK_ERR_AGENT_INSECURE'
  | 'SLK_ERR_AGENT_HELLO_REJECTED'
  | 'SLK_ERR_AGENT_STREAM_HEADER'
  | 'SLK_ERR_AGENT_SERVER_RESTARTING'
  | 'SLK_ERR_AGENT_STATE_DIR'
  | 'SLK_ERR_AGENT_CERT_REFUSED'
  | 'SLK_ERR_AGENT_CERT_TIMEOUT'

/** An agent error; messages name the server, upstream or option at fault and never the token. */
export class AgentError extends Error {
  override name = 'AgentError'
  readonly code: AgentErrorCode
  constructor (code: AgentErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}
