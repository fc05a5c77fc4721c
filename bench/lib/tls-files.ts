import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createCertificateAuthority, createServerCertificate } from '@spokelink/auth'

/** A test CA and a server certificate for 127.0.0.1, as PEM text and as files. */
export interface TlsMaterial {
  caPem: string
  caFile: string
  certFile: string
  keyFile: string
}

/** Makes a throwaway CA and a server certificate for `127.0.0.1`/`localhost` and writes them under `dir`. */
export async function createTlsFiles (dir: string): Promise<TlsMaterial> {
  const ca = await createCertificateAuthority({ commonName: 'spokelink bench CA' })
  const server = await createServerCertificate(ca, { hosts: ['127.0.0.1', 'localhost'] })
  const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server-key.pem') }
  await writeFile(files.caFile, ca.certPem)
  await writeFile(files.certFile, server.certPem)
  await writeFile(files.keyFile, server.keyPem, { mode: 0o600 })
  return { caPem: ca.certPem, ...files }
}
