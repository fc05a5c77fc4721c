/** Codes of errors raised while handling spoke tokens, join tokens and TLS material. */
export type AuthErrorCode =
  | 'SLK_ERR_AUTH_TOKEN_MALFORMED'
  | 'SLK_ERR_AUTH_TOKEN_INVALID'
  | 'SLK_ERR_AUTH_TOKEN_EXPIRED'
  | 'SLK_ERR_AUTH_TOKEN_REVOKED'
  | 'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED'
  | 'SLK_ERR_AUTH_TLS'
  | 'SLK_ERR_AUTH_CSR_INVALID'
  | 'SLK_ERR_AUTH_CERT_INVALID'
  | 'SLK_ERR_AUTH_CERT_BOOTSTRAPPED'

/**
 * An authentication or TLS error. Messages are one line and never contain a secret or a token; a token id may appear.
 */
export class AuthError extends Error {
  override name = 'AuthError'
  readonly code: AuthErrorCode
  constructor (code: AuthErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** Codes of errors raised while reading, validating or editing the spokes file. */
export type ConfigErrorCode =
  | 'SLK_ERR_CONFIG_SPOKES_FILE'
  | 'SLK_ERR_CONFIG_SPOKES_READ'
  | 'SLK_ERR_CONFIG_UNKNOWN_SPOKE'
  | 'SLK_ERR_CONFIG_UNKNOWN_TOKEN'
  | 'SLK_ERR_CONFIG_DUPLICATE'
  | 'SLK_ERR_CONFIG_INVALID_OPTION'
  | 'SLK_ERR_CONFIG_FILE_WATCH'

/**
 * A spokes-file error. The message is one line naming the file, the field path and what was expected.
 */
export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly code: ConfigErrorCode
  constructor (code: ConfigErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** Codes of errors raised while editing the spokes file under its lock. */
export type SpokesFileErrorCode =
  | 'SLK_ERR_SPOKES_LOCK_TIMEOUT'
  | 'SLK_ERR_SPOKES_LOCK_LOST'
  | 'SLK_ERR_SPOKES_WRITE'

/**
 * The spokes file could not be edited safely: another edit holds its lock, the lock was taken away mid-edit, or the
 * new file could not be written. Nothing was changed. Transient, so the CLI exits 1 (not 2): run the command again.
 */
export class SpokesFileError extends Error {
  override name = 'SpokesFileError'
  readonly code: SpokesFileErrorCode
  constructor (code: SpokesFileErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}
