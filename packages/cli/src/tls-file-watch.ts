import { watchTextFiles } from '@spokelink/auth'
import type { TextFilesWatcher } from '@spokelink/auth'
import type { Logger } from 'pino'

/**
 * Watches `--tls-cert`/`--tls-key` and swaps them into the exit-node when they change (a cert-manager renewal, a
 * Secret volume's `..data` swap): new handshakes get the new certificate, live sessions keep their connection. A pair
 * that does not fit (the certificate written, the key not yet) is refused by `setTls` and logged; the old pair stays
 * until the next change completes it.
 */
export function watchTlsFiles (
  paths: { certPath: string, keyPath: string },
  initial: { certPem: string, keyPem: string },
  setTls: (tls: { certPem: string, keyPem: string }) => void,
  logger: Logger
): TextFilesWatcher {
  return watchTextFiles([paths.certPath, paths.keyPath], {
    initial: [initial.certPem, initial.keyPem],
    onChange: ([certPem, keyPem]) => {
      // A file caught mid-write (truncated, half written): wait for the write to finish, its event brings it back.
      if (certPem?.trimEnd().endsWith('-----') !== true || keyPem?.trimEnd().endsWith('-----') !== true) {
        logger.debug({ trigger: 'file change' }, 'tls files incomplete; waiting for the rest of the write')
        return
      }
      try {
        setTls({ certPem: certPem ?? '', keyPem: keyPem ?? '' })
        logger.info({ trigger: 'file change' }, 'tls files reloaded')
      } catch (err) {
        logger.error({ err, trigger: 'file change' }, 'tls reload failed; keeping the current certificate')
      }
    },
    onError: (err) => { logger.error({ err }, 'tls files unreadable; keeping the current certificate') },
  })
}
