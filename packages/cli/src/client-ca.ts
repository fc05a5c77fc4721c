import { join } from 'node:path'
import { AUTO_TLS_FILES } from '@spokelink/auth'
import { ClientCertificateAuthority } from '@spokelink/exit-node'
import { CliError } from './errors.js'
import { readTextFile } from './read-text-file.js'

/**
 * The exit-node's client CA for spokes with `requireClientCert`: `--client-ca-cert`/`--client-ca-key`, or the
 * `--auto-tls` CA (the one join tokens pin). Undefined when there is neither: such spokes are then refused (403).
 * @throws CliError `SLK_ERR_USAGE_CONFLICT` when only one of the pair is given or there is no TLS
 */
export async function loadClientCertificateAuthority (settings: {
  caCertPath: string | undefined
  caKeyPath: string | undefined
  autoTlsDir: string | undefined
  tls: boolean
  spokesPath: string
  lifetimeMs: number
}): Promise<ClientCertificateAuthority | undefined> {
  const { caCertPath, caKeyPath, autoTlsDir } = settings
  if ((caCertPath === undefined) !== (caKeyPath === undefined)) throw new CliError('SLK_ERR_USAGE_CONFLICT', '--client-ca-cert and --client-ca-key go together')
  const paths = caCertPath !== undefined && caKeyPath !== undefined
    ? { cert: caCertPath, key: caKeyPath }
    : autoTlsDir === undefined ? undefined : { cert: join(autoTlsDir, AUTO_TLS_FILES.caCert), key: join(autoTlsDir, AUTO_TLS_FILES.caKey) }
  if (paths === undefined) return undefined
  if (!settings.tls) throw new CliError('SLK_ERR_USAGE_CONFLICT', 'client certificates need TLS on the exit-node: --tls-cert/--tls-key or --auto-tls')
  if (settings.lifetimeMs < 60_000) throw new CliError('SLK_ERR_USAGE_FLAG', '--client-cert-lifetime: at least 1m')
  return new ClientCertificateAuthority({
    caCertPem: await readTextFile('client-ca-cert', paths.cert),
    caKeyPem: await readTextFile('client-ca-key', paths.key),
    spokesPath: settings.spokesPath,
    lifetimeMs: settings.lifetimeMs,
  })
}
