import { decodeJoinToken, parseSpokeToken, watchTextFiles } from '@spokelink/auth'
import type { ConfigError, TextFilesWatcher } from '@spokelink/auth'
import type { Logger } from 'pino'

/** Where the agent's credential comes from when it is a file: `--token-file` (a spoke token) or `--join-file` (a join token). */
export interface CredentialFile {
  flag: 'token-file' | 'join-file'
  path: string
}

/** What a credential file holds once parsed. */
export interface FileCredential {
  token: string
  /** From a join file: the exit-node URL and CA pin it names. */
  server?: string
  caSha256?: string
}

/**
 * Parses the text of a credential file (trimmed; a Secret key often ends with a newline).
 * @throws AuthError `SLK_ERR_AUTH_TOKEN_MALFORMED` / `SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED` (never quoting the text)
 */
export function parseCredentialFile (file: CredentialFile, text: string): FileCredential {
  const trimmed = text.trim()
  if (file.flag === 'token-file') {
    parseSpokeToken(trimmed)
    return { token: trimmed }
  }
  const join = decodeJoinToken(trimmed)
  return { token: join.token, server: join.server, ...(join.caSha256 === undefined ? {} : { caSha256: join.caSha256 }) }
}

/**
 * Watches the agent's credential file and hands each new valid token to `apply` (the next connection uses it; the
 * live session keeps the token it authenticated with). The directory is watched, so a Kubernetes Secret update (an
 * atomic swap of the volume's `..data` symlink) is seen like an in-place write. A join file that now names another
 * server or CA pin is logged: those are fixed at start, only the token is swapped.
 */
export function watchCredentialFile (
  file: CredentialFile,
  current: { initialText: string, server: string, caSha256: string | undefined },
  apply: (token: string) => void,
  logger: Logger,
  options: { pollIntervalMs?: number } = {}
): TextFilesWatcher {
  return watchTextFiles([file.path], {
    initial: [current.initialText],
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
    onChange: ([text]) => {
      let credential: FileCredential
      try {
        credential = parseCredentialFile(file, text ?? '')
      } catch (err) {
        logger.error({ err, file: file.flag }, 'credential file changed but is not usable; keeping the current token')
        return
      }
      apply(credential.token)
      const { id } = parseSpokeToken(credential.token)
      logger.info({ file: file.flag, tokenId: id }, 'credential file changed; the next connection uses the new token')
      if ((credential.server !== undefined && credential.server !== current.server) || (credential.server !== undefined && credential.caSha256 !== current.caSha256)) {
        logger.warn({ file: file.flag }, 'the new join token names another server or CA pin; only its token is used until the agent restarts')
      }
    },
    onError: (err: ConfigError) => {
      logger.error({ err, file: file.flag }, 'credential file unreadable; keeping the current token')
    },
  })
}
