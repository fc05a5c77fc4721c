import { once } from 'node:events'
import tls from 'node:tls'

/** The sha256 fingerprint (`AA:BB:…`) of the certificate the TLS server on 127.0.0.1:`port` presents in a fresh handshake. */
export async function servedFingerprint (port: number): Promise<string> {
  const probe = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false })
  try {
    await once(probe, 'secureConnect')
    return probe.getPeerCertificate().fingerprint256
  } finally {
    probe.destroy()
  }
}
