import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFile, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { runProcess } from '@spokelink/testkit'
import { startChildren } from '../lib/child-group.js'
import { pickNamedPorts } from '../lib/ports.js'
import { waitUntilAccepting, waitUntilForwardingBoth } from '../lib/probe.js'
import { findBinary } from './find-binary.js'
import type { StartedSystem, SystemContext, SystemSpec } from './system.js'

const run = promisify(execFile)
const RATHOLE_VERSION = '0.5.0'
/** rathole 0.5.0's lockfile pins time 0.3.29, which no longer compiles on a current rustc (E0282). */
const TIME_FIX = '0.3.36'
const CACHED_BIN = join(homedir(), '.cache', 'spokelink-tools', 'bin', 'rathole')
const BUILD_TIMEOUT_MS = 30 * 60_000

function log (message: string): void {
  process.stderr.write(`[bench] rathole: ${message}\n`)
}

function cargoHome (): string {
  return process.env.CARGO_HOME ?? join(homedir(), '.cargo')
}

/** The crate's source as `cargo install` unpacked it into the registry, or undefined. */
async function unpackedCrate (): Promise<string | undefined> {
  const src = join(cargoHome(), 'registry', 'src')
  if (!existsSync(src)) return undefined
  for (const index of await readdir(src)) {
    const dir = join(src, index, `rathole-${RATHOLE_VERSION}`)
    if (existsSync(dir)) return dir
  }
  return undefined
}

/**
 * `cargo install rathole --version 0.5.0 --locked`; when that fails (the pinned `time` crate no longer builds on
 * a current rustc), the same crate with `cargo update -p time --precise 0.3.36`. The binary is cached in
 * ~/.cache/spokelink-tools/bin. Resolves with a reason when it cannot.
 */
async function buildRathole (): Promise<{ bin: string } | { skipped: string }> {
  const cargo = await findBinary('cargo') ?? (existsSync(join(cargoHome(), 'bin', 'cargo')) ? join(cargoHome(), 'bin', 'cargo') : undefined)
  if (cargo === undefined) return { skipped: 'cargo not found (rathole is built with `cargo install rathole --version 0.5.0`)' }
  const root = await mkdtemp(join(tmpdir(), 'rathole-build-'))
  const options = { timeout: BUILD_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }
  try {
    log(`building ${RATHOLE_VERSION} with cargo (minutes, once; cached in ${CACHED_BIN})`)
    try {
      await run(cargo, ['install', 'rathole', '--version', RATHOLE_VERSION, '--locked', '--root', root], options)
    } catch {
      const crate = await unpackedCrate()
      if (crate === undefined) return { skipped: `cargo install rathole --version ${RATHOLE_VERSION} failed and the crate source was not unpacked` }
      log(`the pinned lockfile does not build here; retrying with time ${TIME_FIX}`)
      const source = join(root, 'src')
      await cp(crate, source, { recursive: true })
      await run(cargo, ['update', '-p', 'time', '--precise', TIME_FIX], { ...options, cwd: source })
      await run(cargo, ['install', '--path', source, '--locked', '--root', root], options)
    }
    await mkdir(join(CACHED_BIN, '..'), { recursive: true })
    await copyFile(join(root, 'bin', 'rathole'), CACHED_BIN)
    return { bin: CACHED_BIN }
  } catch (err) {
    return { skipped: `building rathole failed: ${(err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''}` }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

async function ratholeBinary (): Promise<{ bin: string } | { skipped: string }> {
  if (existsSync(CACHED_BIN)) return { bin: CACHED_BIN }
  const onPath = await findBinary('rathole')
  if (onPath !== undefined) return { bin: onPath }
  return buildRathole()
}

function serverToml (serverPort: number, token: string, pkcs12: string, password: string, bulkPort: number, httpPort: number): string {
  return [
    '[server]', `bind_addr = "127.0.0.1:${serverPort}"`, `default_token = "${token}"`,
    '[server.transport]', 'type = "tls"',
    '[server.transport.tcp]', 'nodelay = true',
    '[server.transport.tls]', `pkcs12 = "${pkcs12}"`, `pkcs12_password = "${password}"`,
    '[server.services.bulk]', `bind_addr = "127.0.0.1:${bulkPort}"`,
    '[server.services.http]', `bind_addr = "127.0.0.1:${httpPort}"`,
    '',
  ].join('\n')
}

function clientToml (serverPort: number, token: string, caFile: string, context: SystemContext): string {
  return [
    '[client]', `remote_addr = "127.0.0.1:${serverPort}"`, `default_token = "${token}"`,
    '[client.transport]', 'type = "tls"',
    '[client.transport.tcp]', 'nodelay = true',
    '[client.transport.tls]', `trusted_root = "${caFile}"`, 'hostname = "localhost"',
    '[client.services.bulk]', `local_addr = "127.0.0.1:${context.upstream.bulkPort}"`,
    '[client.services.http]', `local_addr = "127.0.0.1:${context.upstream.httpPort}"`,
    '',
  ].join('\n')
}

async function startRathole (context: SystemContext): Promise<StartedSystem> {
  const binary = await ratholeBinary()
  if ('skipped' in binary) return binary
  const token = randomBytes(16).toString('hex')
  const password = randomBytes(12).toString('hex')
  // rathole's server takes its identity as PKCS#12 only.
  const pkcs12 = join(context.dir, 'identity.p12')
  await run('openssl', ['pkcs12', '-export', '-out', pkcs12, '-inkey', context.tls.keyFile, '-in', context.tls.certFile, '-passout', `pass:${password}`])
  const { serverPort, bulkPort, httpPort } = await pickNamedPorts(['serverPort', 'bulkPort', 'httpPort'])
  const serverFile = join(context.dir, 'server.toml')
  const clientFile = join(context.dir, 'client.toml')
  await writeFile(serverFile, serverToml(serverPort, token, pkcs12, password, bulkPort, httpPort), { mode: 0o600 })
  await writeFile(clientFile, clientToml(serverPort, token, context.tls.caFile, context), { mode: 0o600 })
  const env = { RUST_LOG: 'error' }
  return startChildren(async (group) => {
    const server = group.add(runProcess(binary.bin, ['--server', serverFile], { name: 'rathole server', env }))
    await group.until(waitUntilAccepting(serverPort, 'rathole server'))
    const client = group.add(runProcess(binary.bin, ['--client', clientFile], { name: 'rathole client', env }))
    await group.until(waitUntilForwardingBoth({ bulkPort, httpPort }, 'rathole'))
    return { bulkPort, httpPort, pids: { server: server.pid, client: client.pid } }
  })
}

/** rathole 0.5 over TLS (native-tls, the bench CA): a TLS connection from client to server per forwarded connection. */
export const rathole: SystemSpec = {
  name: 'rathole 0.5 (TLS)',
  kind: 'peer',
  bulk: true,
  start: startRathole,
}
