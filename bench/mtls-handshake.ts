/**
 * `pnpm bench:mtls`: what a client certificate adds to an agent's connect. An in-process exit-node with `--auto-tls`
 * material and a client CA serves two spokes: `plain` (token only) and `mtls` (`requireClientCert`, the agent
 * presenting the certificate the CA issued for its key). Each round opens a connection with the agent's own
 * `connectExitNode` (TCP + TLS + WebSocket upgrade with the token check and, for `mtls`, the certificate check) and
 * closes it; rounds alternate between the two so drift hits both alike. Not a test: nothing here asserts.
 *
 *   tsx bench/mtls-handshake.ts [--rounds 300]
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { Registry } from 'prom-client'
import { connectExitNode } from '@spokelink/agent'
import { AUTO_TLS_FILES, createCertificateRequest, createClientKey, createSpokeToken, ensureAutoTls, loadSpokesFile } from '@spokelink/auth'
import { ClientCertificateAuthority, createExitNode } from '@spokelink/exit-node'
import { percentile, median } from './lib/stats.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '300' } } })
const rounds = Number(values.rounds)

const dir = await mkdtemp(join(tmpdir(), 'slk-bench-mtls-'))
try {
  const tlsDir = join(dir, 'tls')
  const material = await ensureAutoTls(tlsDir, { hosts: ['127.0.0.1'] })
  const plain = createSpokeToken()
  const mtls = createSpokeToken()
  const spokesPath = join(dir, 'spokes.yaml')
  await writeFile(spokesPath, [
    'spokes:',
    `  - {name: plain, tokens: [{id: ${plain.id}, sha256: "${plain.sha256}"}]}`,
    `  - {name: mtls, requireClientCert: true, tokens: [{id: ${mtls.id}, sha256: "${mtls.sha256}"}]}`,
    '',
  ].join('\n'))
  const authority = new ClientCertificateAuthority({
    caCertPem: await readFile(join(tlsDir, AUTO_TLS_FILES.caCert), 'utf8'),
    caKeyPem: await readFile(join(tlsDir, AUTO_TLS_FILES.caKey), 'utf8'),
    spokesPath,
  })
  const exitNode = createExitNode({
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
    shutdownGraceMs: 100,
    // The bench opens hundreds of sessions from one address: no failed-auth or unauthenticated cap may interfere.
    maxUnauthenticatedPerSource: 10_000,
    tls: { certPem: `${material.certPem.trimEnd()}\n${material.caPem.trimEnd()}\n`, keyPem: material.keyPem },
  }, await loadSpokesFile(spokesPath), { logger: pino({ level: 'silent' }), registry: new Registry(), clientCertificates: authority })
  const { port } = await exitNode.listen()
  const keyPem = createClientKey()
  const issued = await authority.issue({ spoke: 'mtls', tokenId: mtls.id }, createCertificateRequest(keyPem, { spoke: 'mtls', tokenId: mtls.id }), new Date())
  exitNode.updateSpokes(issued.spokes)

  const url = `wss://127.0.0.1:${port}/connect`
  const connectOnce = async (token: string, clientTls?: { certPem: string, keyPem: string }): Promise<number> => {
    const started = performance.now()
    const { ws } = await connectExitNode({ url, token, caSha256: material.caSha256, insecure: false, handshakeTimeoutMs: 10_000, maxMessageBytes: 4 * 1024 * 1024, clientTls })
    const ms = performance.now() - started
    ws.terminate()
    return ms
  }
  const samples = { plain: [] as number[], mtls: [] as number[] }
  for (let i = 0; i < 20; i++) { // warm-up: JIT, TLS session code paths
    await connectOnce(plain.token)
    await connectOnce(mtls.token, { certPem: issued.certPem, keyPem })
  }
  for (let i = 0; i < rounds; i++) {
    samples.plain.push(await connectOnce(plain.token))
    samples.mtls.push(await connectOnce(mtls.token, { certPem: issued.certPem, keyPem }))
  }
  const row = (name: string, s: number[]): string => `${name.padEnd(26)} ${median(s).toFixed(2).padStart(7)} ${percentile(s, 95).toFixed(2).padStart(7)} ${percentile(s, 99).toFixed(2).padStart(7)}`
  console.log(`connect to /connect (TCP + TLS 1.3 + upgrade + auth), ${rounds} rounds each, ms:`)
  console.log(`${''.padEnd(26)} ${'p50'.padStart(7)} ${'p95'.padStart(7)} ${'p99'.padStart(7)}`)
  console.log(row('wss, token only', samples.plain))
  console.log(row('wss + client certificate', samples.mtls))
  console.log(`mTLS adds ${(median(samples.mtls) - median(samples.plain)).toFixed(2)} ms at the median`)
  await exitNode.close()
} finally {
  await rm(dir, { recursive: true, force: true })
}
