import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findExecutable } from './find-executable.js'
import { freePort } from './free-port.js'
import { runProcess } from './run-process.js'
import type { RunningProcess } from './run-process.js'
import { createTlsFixture } from './tls-fixture.js'
import { waitFor } from './wait-for.js'

/** Options of {@link startApiServer}. */
export interface StartApiServerOptions {
  /** How long etcd and the apiserver have to become ready. @default 90_000 */
  readyTimeoutMs?: number
}

/** One answer of {@link RunningApiServer.request}. */
export interface ApiResponse {
  status: number
  body: unknown
}

/** A real etcd + kube-apiserver on loopback started by {@link startApiServer}. */
export interface RunningApiServer {
  /** `https://127.0.0.1:<port>`. */
  readonly url: string
  /** The CA the apiserver's serving certificate chains to. */
  readonly caPem: string
  /** A static token in group `system:masters` (the test's own admin; never give it to the code under test). */
  readonly adminToken: string
  readonly dir: string
  /** A JSON request with `token` (default: the admin token); any HTTP status resolves. */
  request: (method: string, path: string, body?: unknown, token?: string) => Promise<ApiResponse>
  /** Writes a kubeconfig for this apiserver with `token` and returns its path. */
  writeKubeconfig: (token: string, name: string) => Promise<string>
  /** Stops the apiserver and etcd and removes their data; idempotent. */
  close: () => Promise<void>
}

/** Where the real-cluster harness (`test/kube/build-tools.sh`) caches kube-apiserver, unless KUBE_APISERVER_BIN says. */
export function findKubeApiServerBin (): string | undefined {
  const tools = process.env.SPOKELINK_KUBE_TOOLS ?? '/var/cache/spokelink-kube'
  return findExecutable({ env: 'KUBE_APISERVER_BIN', fallbacks: [join(tools, 'bin', 'kube-apiserver')] })
}

/** Debian's etcd (`apt-get install etcd-server`), on PATH or at /usr/bin/etcd. */
export function findEtcdBin (): string | undefined {
  return findExecutable({ name: 'etcd', fallbacks: ['/usr/bin/etcd'] })
}

/**
 * Why a real apiserver cannot be started here, or undefined when it can: for
 * `describe.skipIf(apiServerMissing() !== undefined)`, printing the reason.
 * @throws Error when something is missing and `CI` is set: in CI those tests must run, never skip.
 */
export function apiServerMissing (): string | undefined {
  const missing = [
    findEtcdBin() === undefined ? 'etcd (apt-get install etcd-server)' : undefined,
    findKubeApiServerBin() === undefined ? 'kube-apiserver (bash test/kube/build-tools.sh --apiserver-only, or KUBE_APISERVER_BIN)' : undefined,
  ].filter((item) => item !== undefined)
  if (missing.length === 0) return undefined
  const reason = `no real apiserver: missing ${missing.join(' and ')}`
  const ci = process.env.CI
  if (ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0') throw new Error(`${reason}. CI is set, so these tests must not be skipped.`)
  return reason
}

async function requestJson (url: string, caPem: string, method: string, path: string, token: string, body?: unknown): Promise<ApiResponse> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return new Promise<ApiResponse>((resolve, reject) => {
    const req = https.request(`${url}${path}`, {
      method,
      ca: caPem,
      // A length for every body: Node sends a DELETE's body without one (no chunking for DELETE by default),
      // and the apiserver then reads the body as the connection's next request (400 to whatever follows).
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }) },
      signal: AbortSignal.timeout(10_000),
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: unknown = text
        try { parsed = JSON.parse(text) } catch { /* /readyz and friends answer plain text */ }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

/**
 * Starts Debian's etcd and a real kube-apiserver (the harness's v1.34 build) on 127.0.0.1 free ports, with RBAC,
 * a static admin token, service-account signing keys (so TokenRequest mints real service-account tokens) and a
 * serving certificate from a throwaway CA. No controller-manager: no garbage collector, no default
 * ServiceAccount; tests create what they need.
 * @throws Error when a binary is missing or either server is not ready in time (with its output's tail)
 */
export async function startApiServer (options: StartApiServerOptions = {}): Promise<RunningApiServer> {
  const etcdBin = findEtcdBin()
  const apiServerBin = findKubeApiServerBin()
  if (etcdBin === undefined || apiServerBin === undefined) throw new Error(apiServerMissing() ?? 'no real apiserver')
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000
  const dir = await mkdtemp(join(tmpdir(), 'spokelink-apiserver-'))
  const processes: RunningProcess[] = []
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      for (const proc of processes.reverse()) await proc.kill()
      await rm(dir, { recursive: true, force: true })
    })()
    await closing
  }
  try {
    const tls = await createTlsFixture({ hosts: ['127.0.0.1'] })
    const serviceAccountKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const adminToken = randomBytes(24).toString('hex')
    const files = {
      cert: join(dir, 'apiserver.crt'),
      key: join(dir, 'apiserver.key'),
      saKey: join(dir, 'sa.key'),
      saPub: join(dir, 'sa.pub'),
      tokens: join(dir, 'tokens.csv'),
    }
    await writeFile(files.cert, tls.certPem)
    await writeFile(files.key, tls.keyPem, { mode: 0o600 })
    await writeFile(files.saKey, serviceAccountKey.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
    await writeFile(files.saPub, serviceAccountKey.publicKey.export({ type: 'spki', format: 'pem' }))
    await writeFile(files.tokens, `${adminToken},spokelink-test-admin,spokelink-test-admin,"system:masters"\n`, { mode: 0o600 })

    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()]
    const etcd = runProcess(etcdBin, [
      '--name', 'default', '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdClient}`, '--advertise-client-urls', `http://127.0.0.1:${etcdClient}`,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`, '--log-level', 'warn',
    ], { name: 'etcd', env: { ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? undefined : process.arch } })
    processes.push(etcd)
    await waitFor(async () => {
      if (etcd.exit !== undefined) throw new Error(`etcd exited: ${etcd.output().slice(-2000)}`)
      const res = await fetch(`http://127.0.0.1:${etcdClient}/health`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
      return res?.ok === true
    }, { timeoutMs: readyTimeoutMs, what: 'etcd /health' })

    const apiServer = runProcess(apiServerBin, [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
      `--tls-cert-file=${files.cert}`, `--tls-private-key-file=${files.key}`,
      `--token-auth-file=${files.tokens}`, '--authorization-mode=RBAC',
      `--service-account-key-file=${files.saPub}`, `--service-account-signing-key-file=${files.saKey}`,
      '--service-account-issuer=https://kubernetes.default.svc', '--api-audiences=https://kubernetes.default.svc',
      '--service-cluster-ip-range=10.96.0.0/16', `--cert-dir=${join(dir, 'certs')}`,
      '--enable-priority-and-fairness=false', '--profiling=false', '--v=0',
    ], { name: 'kube-apiserver' })
    processes.push(apiServer)
    const url = `https://127.0.0.1:${apiPort}`
    await waitFor(async () => {
      if (apiServer.exit !== undefined) throw new Error(`kube-apiserver exited: ${apiServer.output().slice(-3000)}`)
      const res = await requestJson(url, tls.caPem, 'GET', '/readyz', adminToken).catch(() => undefined)
      return res?.status === 200
    }, { timeoutMs: readyTimeoutMs, what: 'kube-apiserver /readyz' })

    return {
      url,
      caPem: tls.caPem,
      adminToken,
      dir,
      request: async (method, path, body, token) => requestJson(url, tls.caPem, method, path, token ?? adminToken, body),
      writeKubeconfig: async (token, name) => {
        const file = join(dir, `${name}.kubeconfig`)
        await writeFile(file, JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'test', cluster: { server: url, 'certificate-authority-data': Buffer.from(tls.caPem).toString('base64') } }],
          users: [{ name, user: { token } }],
          contexts: [{ name, context: { cluster: 'test', user: name } }],
          'current-context': name,
        }), { mode: 0o600 })
        return file
      },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}
