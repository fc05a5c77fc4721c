import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { basename, dirname, join } from 'node:path'
import { AUTO_TLS_FILES } from '@spokelink/auth'

/**
 * Why agents will refuse `serverUrl` although the join token pins the right CA, or `undefined` when nothing is
 * wrong or nothing can be told: when `caPath` is an `--auto-tls` directory's `ca.crt`, the server certificate beside
 * it (`tls.crt`, issued by that CA) is what the exit-node presents, and it must name the URL's host.
 */
export async function serverHostMismatch (serverUrl: string, caPath: string): Promise<string | undefined> {
  let host: string
  try {
    host = new URL(serverUrl).hostname.replace(/^\[(.*)\]$/, '$1')
  } catch {
    return undefined // --server is judged where the join token is decoded; this check only warns
  }
  if (basename(caPath) !== AUTO_TLS_FILES.caCert) return undefined
  const leafPath = join(dirname(caPath), AUTO_TLS_FILES.cert)
  let leaf: X509Certificate
  let ca: X509Certificate
  try {
    [leaf, ca] = await Promise.all([readFile(leafPath), readFile(caPath)]).then(([leafPem, caPem]) => [new X509Certificate(leafPem), new X509Certificate(caPem)])
  } catch {
    return undefined // no readable certificate beside the CA (not an --auto-tls directory, or not made yet)
  }
  if (!leaf.checkIssued(ca)) return undefined
  const named = isIP(host) === 0 ? leaf.checkHost(host) !== undefined : leaf.checkIP(host) !== undefined
  if (named) return undefined
  return `--server host ${host} is not in the exit-node certificate ${leafPath} (${(leaf.subjectAltName ?? 'no names').slice(0, 200)}); agents will refuse it (SLK_ERR_AGENT_TLS_PIN): add ${host} to the exit-node's --auto-tls-hosts and restart it, or use a --server URL with a name it has`
}
