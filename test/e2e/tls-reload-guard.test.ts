/**
 * `ExitNode.setTls` with a file caught mid-write: Node's `setSecureContext` silently skips an empty key or
 * certificate, which would leave a context that fails every handshake. The exit-node must refuse it and keep serving
 * the pair in use (the watched `--tls-cert`/`--tls-key` can be read between a truncate and a write).
 */
import { X509Certificate } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import pino from 'pino'
import { parseSpokesConfig } from '@spokelink/auth'
import { createTlsFixture, servedFingerprint } from '@spokelink/testkit'
import { startExitNode } from './in-process-tunnel.js'

describe('setTls with an incomplete pair', () => {
  test('an empty key or certificate is refused (SLK_ERR_EXIT_TLS_RELOAD) and handshakes keep the current pair', async () => {
    const fixture = await createTlsFixture()
    const { exitNode, port } = await startExitNode(parseSpokesConfig('spokes: []', 'test'), pino({ level: 'silent' }), { tls: { certPem: fixture.certPem, keyPem: fixture.keyPem } })
    const fingerprint = new X509Certificate(fixture.certPem).fingerprint256
    expect(await servedFingerprint(port)).toBe(fingerprint)
    for (const broken of [{ certPem: fixture.certPem, keyPem: '' }, { certPem: '', keyPem: fixture.keyPem }, { certPem: fixture.certPem, keyPem: fixture.keyPem.slice(0, 200) }]) {
      expect(() => { exitNode.setTls(broken) }).toThrow(expect.objectContaining({ code: 'SLK_ERR_EXIT_TLS_RELOAD' }))
      expect(await servedFingerprint(port)).toBe(fingerprint)
    }
  })
})
