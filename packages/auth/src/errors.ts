import { SpokelinkError } from '@spokelink/errors'

/** Codes of errors raised while handling spoke tokens, join tokens and TLS material. */
export const AUTH_ERROR_CODES = [
  'SLK_ERR_AUTH_TOKEN_MALFORMED',
  'SLK_ERR_AUTH_TOKEN_INVALID',
  'SLK_ERR_AUTH_TOKEN_EXPIRED',
  'SLK_ERR_AUTH_TOKEN_REVOKED',
  'SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED',
  'SLK_ERR_AUTH_TLS',
  'SLK_ERR_AUTH_CSR_INVALID',
  'SLK_ERR_AUTH_CERT_INVALID',
  'SLK_ERR_AUTH_CERT_BOOTSTRAPPED',
] as const
/** A value of {@link AUTH_ERROR_CODES}. */
export type AuthErrorCode = typeof AUTH_ERROR_CODES[number]

/**
 * An authentication or TLS error. Messages are one line and never contain a secret or a token; a token id may appear.
 */
export class AuthError extends SpokelinkError<AuthErrorCode> {
  override name = 'AuthError'
}

/** Codes of errors raised while reading, validating or editing the spokes file. */
export const CONFIG_ERROR_CODES = [
  'SLK_ERR_CONFIG_SPOKES_FILE',
  'SLK_ERR_CONFIG_SPOKES_READ',
  'SLK_ERR_CONFIG_UNKNOWN_SPOKE',
  'SLK_ERR_CONFIG_UNKNOWN_TOKEN',
  'SLK_ERR_CONFIG_DUPLICATE',
  'SLK_ERR_CONFIG_INVALID_OPTION',
  'SLK_ERR_CONFIG_FILE_WATCH',
] as const
/** A value of {@link CONFIG_ERROR_CODES}. */
export type ConfigErrorCode = typeof CONFIG_ERROR_CODES[number]

/**
 * A spokes-file error. The message is one line naming the file, the field path and what was expected.
 */
export class ConfigError extends SpokelinkError<ConfigErrorCode> {
  override name = 'ConfigError'
}

/** Codes of errors raised while editing the spokes file under its lock. */
export const SPOKES_FILE_ERROR_CODES = [
  'SLK_ERR_SPOKES_LOCK_TIMEOUT',
  'SLK_ERR_SPOKES_LOCK_LOST',
  'SLK_ERR_SPOKES_WRITE',
] as const
/** A value of {@link SPOKES_FILE_ERROR_CODES}. */
export type SpokesFileErrorCode = typeof SPOKES_FILE_ERROR_CODES[number]

/**
 * The spokes file could not be edited safely: another edit holds its lock, the lock was taken away mid-edit, or the
 * new file could not be written. Nothing was changed. Transient, so the CLI exits 1 (not 2): run the command again.
 */
export class SpokesFileError extends SpokelinkError<SpokesFileErrorCode> {
  override name = 'SpokesFileError'
}
