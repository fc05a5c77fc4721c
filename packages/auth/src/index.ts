/**
 * Identity and trust for spokelink: spoke tokens (create, hash, constant-time verify), join tokens, TLS material
 * made with node-forge, and the exit-node's spokes file (schema, load, watch, token edits).
 *
 * @example
 * ```ts
 * import { createSpokeToken, addSpokeToken, editSpokesFile, encodeJoinToken, loadSpokesFile, verifySpokeToken } from '@spokelink/auth'
 *
 * const { token, id, sha256 } = createSpokeToken()
 * await editSpokesFile('spokes.yaml', (text) => addSpokeToken(text, 'orion-aws', { id, sha256, created: new Date() }))
 * const joinToken = encodeJoinToken({ server: 'wss://hub.example.com/connect', token })
 * // exit-node, before accepting the upgrade:
 * const { spoke, tokenId } = verifySpokeToken(bearer, await loadSpokesFile('spokes.yaml'), new Date())
 * ```
 *
 * @packageDocumentation
 */
export { isSha256Hex } from './sha256-hex.js'
export { AuthError, ConfigError, SpokesFileError, AUTH_ERROR_CODES, CONFIG_ERROR_CODES, SPOKES_FILE_ERROR_CODES } from './errors.js'
export type { AuthErrorCode, ConfigErrorCode, SpokesFileErrorCode } from './errors.js'
export { SPOKE_TOKEN_ID_LENGTH, SPOKE_TOKEN_ID_PATTERN, SPOKE_TOKEN_PREFIX, SPOKE_TOKEN_SECRET_BYTES, isSpokeToken } from './spoke-token-format.js'
export type { ParsedSpokeToken } from './spoke-token-format.js'
export { createSpokeToken, hashTokenSecret, parseSpokeToken, sessionRevocationReason, verifySpokeToken } from './spoke-token.js'
export type { CreatedSpokeToken, SessionCredential, VerifiedSpokeToken } from './spoke-token.js'
export { JOIN_TOKEN_PREFIX, decodeJoinToken, encodeJoinToken } from './join-token.js'
export type { JoinToken } from './join-token.js'
export {
  AUTO_TLS_FILES,
  TLS_DEFAULTS,
  certificateSha256,
  checkCertificateHosts,
  createCertificateAuthority,
  createServerCertificate,
  ensureAutoTls,
} from './tls-material.js'
export type {
  AutoTlsMaterial,
  AutoTlsOptions,
  CertificateAndKey,
  CertificateAuthorityOptions,
  ServerCertificateOptions,
} from './tls-material.js'
export { parseSpokesConfig } from './spokes-config.js'
export { REDACTED_MARK, quoteValue, redactSecrets } from './redact-secrets.js'
export type { HubServiceConfig, PortConfig, SpokeConfig, SpokesConfig, TokenEntry } from './spokes-config.js'
export { WATCH_SPOKES_FILE_DEFAULTS, loadSpokesFile, loadSpokesFileWithDigest, watchSpokesFile } from './spokes-file.js'
export type { SpokesFileReadOutcome, SpokesFileWatcher, WatchSpokesFileOptions } from './spokes-file.js'
export { WATCH_TEXT_FILES_DEFAULTS, watchTextFiles } from './watch-text-files.js'
export type { TextFilesWatcher, WatchTextFilesOptions } from './watch-text-files.js'
export { addSpokeToken, listSpokeTokens, recordClientCertificate, revokeCertificateSerial, revokeSpokeToken, setSpokeTokenExpiry } from './spokes-file-editor.js'
export { CLIENT_CERT_DEFAULTS, createCertificateRequest, createClientKey, readClientCertificate, signClientCertificate } from './client-certificate.js'
export type { ClientCertificateIdentity } from './client-certificate.js'
export { rotateSpokeToken } from './rotate-spoke-token.js'
export type { SpokeTokenRotation } from './rotate-spoke-token.js'
export type { SpokeTokenListing } from './spokes-file-editor.js'
export { editSpokesFile } from './edit-spokes-file.js'
export type { SpokesFileEdit } from './edit-spokes-file.js'
export { SPOKES_FILE_LOCK_DEFAULTS, acquireSpokesFileLock, validateSpokesFileLockOptions } from './spokes-file-lock.js'
export type { SpokesFileLock, SpokesFileLockHooks, SpokesFileLockOptions } from './spokes-file-lock.js'
export { syncDirectory, writeFileAtomic } from './write-file-atomic.js'
export type { WriteFileAtomicOptions } from './write-file-atomic.js'
