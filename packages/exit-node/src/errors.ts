import { SpokelinkError } from '@spokelink/errors'

/** Codes of errors raised by the exit-node. */
export const EXIT_NODE_ERROR_CODES = [
  'SLK_ERR_EXIT_LISTEN',
  'SLK_ERR_EXIT_INVALID_OPTION',
  'SLK_ERR_EXIT_HELLO',
  'SLK_ERR_EXIT_SESSION_REVOKED',
  'SLK_ERR_EXIT_STREAM_OPEN_TIMEOUT',
  'SLK_ERR_EXIT_IDLE_TIMEOUT',
  'SLK_ERR_EXIT_TLS_RELOAD',
  'SLK_ERR_EXIT_UNAUTHENTICATED_LIMIT',
  'SLK_ERR_EXIT_UNAUTHENTICATED_SOURCE_LIMIT',
  'SLK_ERR_EXIT_HANDSHAKE_TIMEOUT',
  'SLK_ERR_EXIT_AUTH_THROTTLED',
  'SLK_ERR_EXIT_SESSION_LIMIT',
  'SLK_ERR_EXIT_KUBE_API',
  'SLK_ERR_EXIT_CERT_REQUESTS',
  'SLK_ERR_EXIT_CERT_ISSUE',
  'SLK_ERR_EXIT_HUB_STREAM',
] as const
/** A value of {@link EXIT_NODE_ERROR_CODES}. */
export type ExitNodeErrorCode = typeof EXIT_NODE_ERROR_CODES[number]

/** An exit-node error; messages name the address, spoke or option at fault and never a secret. */
export class ExitNodeError extends SpokelinkError<ExitNodeErrorCode> {
  override name = 'ExitNodeError'
  /** The Kubernetes API's HTTP status, on SLK_ERR_EXIT_KUBE_API errors that got an answer. */
  readonly httpStatus: number | undefined
  constructor (code: ExitNodeErrorCode, message: string, options?: ErrorOptions & { httpStatus?: number }) {
    super(code, message, options)
    this.httpStatus = options?.httpStatus
  }
}
