import os from 'node:os'
import { Command } from 'commander'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { ensureAutoTls, loadSpokesFileWithDigest, watchSpokesFile } from '@spokelink/auth'
import type { SpokesConfig } from '@spokelink/auth'
import { createExitNode, validateExitNodeOptions } from '@spokelink/exit-node'
import type { ExitNodeOptions } from '@spokelink/exit-node'
import { addCheckConfigOption, addOptions, resolveCommandConfig } from '../command-options.js'
import { untilAborted } from '../command-context.js'
import type { CommandContext } from '../command-context.js'
import { describeConfig, listSetting, numberSetting, splitHostPort, stringSetting } from '../config.js'
import type { OptionSpec, ResolvedConfig } from '../config.js'
import { CliError } from '../errors.js'
import { createRootLogger, isLogLevel } from '../logger.js'
import { printLine } from '../output.js'
import { describeEndpointSlices, endpointSlicesSetting } from '../endpoint-slices-setting.js'
import type { EndpointSlicesSetting } from '../endpoint-slices-setting.js'
import { readTextFile } from '../read-text-file.js'
import { checkCertificateAndKey, inspectAutoTlsDir } from '../tls-files.js'
import type { CertificateSummary } from '../tls-files.js'
import { watchTlsFiles } from '../tls-file-watch.js'
import { loadClientCertificateAuthority } from '../client-ca.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** Settings of `spokelink server`. */
export const SERVER_OPTIONS: readonly OptionSpec[] = [
  { name: 'listen', kind: 'address', arg: 'addr', default: '0.0.0.0:8123', help: 'address agents dial (/connect, /healthz, /readyz only)' },
  { name: 'admin-listen', kind: 'address', arg: 'addr', default: '127.0.0.1:9464', help: 'operators\' address (/metrics, /v1/sd, /healthz, /readyz); in Kubernetes the pod IP' },
  { name: 'spokes', kind: 'string', arg: 'file', help: 'spokes file (YAML or JSON), watched for changes' },
  { name: 'tls-cert', kind: 'string', arg: 'file', help: 'serve wss with this certificate (PEM); watched, a renewed file is used for new handshakes' },
  { name: 'tls-key', kind: 'string', arg: 'file', help: 'private key of --tls-cert (PEM)' },
  { name: 'auto-tls', kind: 'string', arg: 'dir', help: 'make (once) and use a CA and server certificate kept in this directory' },
  { name: 'client-ca-cert', kind: 'string', arg: 'file', help: 'CA (PEM) that signs agents\' client certificates for spokes with requireClientCert (default with --auto-tls: its CA)' },
  { name: 'client-ca-key', kind: 'string', arg: 'file', help: 'private key of --client-ca-cert' },
  { name: 'client-cert-lifetime', kind: 'duration', arg: 'duration', default: 7 * 86_400_000, help: 'lifetime of an issued client certificate; agents renew it over the live session' },
  { name: 'auto-tls-hosts', kind: 'list', arg: 'names', help: 'DNS names / IPs agents dial, which the --auto-tls certificate must name (repeatable or comma-separated; default: the hostname, localhost, 127.0.0.1)' },
  { name: 'keepalive', kind: 'duration', arg: 'duration', default: 15_000, help: 'ping interval; a session missing two pongs is closed' },
  { name: 'shutdown-grace', kind: 'duration', arg: 'duration', default: 10_000, help: 'on SIGTERM, how long open streams may drain' },
  { name: 'sd-target', kind: 'string', arg: 'template', default: '{host}:{port}', help: 'target address in /v1/sd; {spoke} {upstream} {host} {port}' },
  { name: 'sd-host', kind: 'string', arg: 'host', help: '{host} in /v1/sd for a port bound to 0.0.0.0 (default: the --admin-listen host, or the hostname when that is 0.0.0.0)' },
  { name: 'data-idle-timeout', kind: 'duration', arg: 'duration', default: 300_000, help: 'close a data-plane connection after this long without bytes either way (a port\'s idleTimeout overrides it)' },
  { name: 'max-connections-per-port', kind: 'count', arg: 'n', default: 256, help: 'concurrent connections per data-plane port; more are reset at once (a port\'s maxConnections overrides it)' },
  { name: 'max-connections-per-hub-service', kind: 'count', arg: 'n', default: 64, help: 'streams a spoke may have open to one hub service; more are refused with a reason (a hubServices entry\'s maxConnections overrides it)' },
  { name: 'hub-request-max-body-bytes', kind: 'count', arg: 'bytes', default: 16 * 1024 * 1024, help: 'largest request body on a hub service with an allow list (streamed, counted); more is refused with 403' },
  { name: 'endpoint-slices', kind: 'boolean', default: false, help: 'keep an EndpointSlice per connected spoke (several replicas; needs POD_NAME, POD_IP, POD_NAMESPACE, POD_UID and a Role on endpointslices)' },
  { name: 'service-prefix', kind: 'string', arg: 'prefix', help: 'a spoke\'s Service is <prefix><spoke> (with --endpoint-slices)' },
  { name: 'info-labels', kind: 'list', arg: 'names', help: 'agent --label names copied into spokelink_spoke_info and the status page (repeatable or comma-separated; others are ignored)' },
  { name: 'log-level', kind: 'choice', arg: 'level', choices: LOG_LEVELS, default: 'info', help: 'pino log level' },
  { name: 'tls-handshake-timeout', kind: 'duration', arg: 'duration', default: 10_000, help: 'a wss client that has not finished TLS this long after connecting is closed' },
  { name: 'tls-lean-buffers', kind: 'boolean', default: false, help: 'start TLS on a wss connection\'s first bytes: ~50-65 KiB less RSS per session that receives bursts, ~15 % more CPU per byte received (README Fleet)' },
  { name: 'headers-timeout', kind: 'duration', arg: 'duration', default: 10_000, help: 'a client that has not sent its whole request (upgrade headers) this long after connecting is closed' },
  { name: 'max-unauthenticated', kind: 'count', arg: 'n', default: 2048, help: 'connections whose upgrade is not accepted yet, all sources; more are closed at accept' },
  { name: 'max-unauthenticated-per-source', kind: 'count', arg: 'n', default: 128, help: 'the same per source address (IPv4, or IPv6 /64)' },
  { name: 'failed-auth-burst', kind: 'count', arg: 'n', default: 10, help: 'refused upgrades per source before it is answered 429 with Retry-After' },
  { name: 'failed-auth-refill', kind: 'duration', arg: 'duration', default: 1000, help: 'a source earns one more refused upgrade after each period' },
  { name: 'max-failed-auth-sources', kind: 'count', arg: 'n', default: 10_000, help: 'sources whose failed-auth budget is remembered (least recently seen forgotten first)' },
  { name: 'max-sessions-per-spoke', kind: 'count', arg: 'n', default: 4, help: 'live sessions per spoke when the spokes file sets no maxSessionsPerSpoke / maxSessions; more are closed with 4429' },
  { name: 'log-sample-interval', kind: 'duration', arg: 'duration', default: 10_000, help: 'repeated refusals log one line per reason per interval, then a count' },
]

/** The exit-node settings a start uses, resolved and validated; nothing is bound or written yet. */
interface PreparedServer {
  resolved: ResolvedConfig
  level: string
  spokesPath: string
  spokes: SpokesConfig
  /** sha256 of the spokes file's text as loaded: the watch does not parse that same text again. */
  spokesTextSha256: string
  options: ExitNodeOptions
  tls: { kind: 'files', certPath: string, keyPath: string, certPem: string, keyPem: string, summary: CertificateSummary } |
    { kind: 'auto', dir: string, hosts: string[] } | undefined
  endpointSlices: EndpointSlicesSetting | undefined
}

/**
 * Everything a start checks before it binds: flags, env and `--config`, the spokes file, the TLS files (read and
 * matched), the `--auto-tls` hosts, and the exit-node options. `--check-config` and a real start share it.
 * @throws CliError (exit 2), ConfigError SLK_ERR_CONFIG_SPOKES_*, ExitNodeError SLK_ERR_EXIT_INVALID_OPTION
 */
async function prepareServer (command: Command, context: CommandContext): Promise<PreparedServer> {
  const resolved = await resolveCommandConfig(command, SERVER_OPTIONS, context.env)
  const { config } = resolved
  const spokesPath = stringSetting(config, 'spokes', true)
  const listen = splitHostPort(stringSetting(config, 'listen', true))
  if (listen === undefined) throw new CliError('SLK_ERR_USAGE_FLAG', '--listen: expected host:port')
  const adminListen = splitHostPort(stringSetting(config, 'admin-listen', true))
  if (adminListen === undefined) throw new CliError('SLK_ERR_USAGE_FLAG', '--admin-listen: expected host:port')
  const certPath = stringSetting(config, 'tls-cert')
  const keyPath = stringSetting(config, 'tls-key')
  const autoTlsDir = stringSetting(config, 'auto-tls')
  if ((certPath === undefined) !== (keyPath === undefined)) throw new CliError('SLK_ERR_USAGE_CONFLICT', '--tls-cert and --tls-key go together')
  if (certPath !== undefined && autoTlsDir !== undefined) throw new CliError('SLK_ERR_USAGE_CONFLICT', '--auto-tls cannot be combined with --tls-cert/--tls-key')
  const endpointSlices = await endpointSlicesSetting(config, context.env)
  const { config: spokes, textSha256: spokesTextSha256 } = await loadSpokesFileWithDigest(spokesPath)
  let tls: PreparedServer['tls']
  if (certPath !== undefined && keyPath !== undefined) {
    const pems = await readCertificateAndKey(certPath, keyPath)
    tls = { kind: 'files', certPath, keyPath, ...pems, summary: checkCertificateAndKey({ cert: certPath, key: keyPath }, pems) }
  } else if (autoTlsDir !== undefined) {
    const hosts = listSetting(config, 'auto-tls-hosts')
    tls = { kind: 'auto', dir: autoTlsDir, hosts: hosts.length > 0 ? hosts : [os.hostname(), 'localhost', '127.0.0.1'] }
  }
  const keepaliveIntervalMs = numberSetting(config, 'keepalive')
  const options: ExitNodeOptions = {
    host: listen.host,
    port: listen.port,
    keepaliveIntervalMs,
    keepaliveTimeoutMs: 2 * keepaliveIntervalMs,
    shutdownGraceMs: numberSetting(config, 'shutdown-grace'),
    sdTargetTemplate: stringSetting(config, 'sd-target', true),
    sdHost: stringSetting(config, 'sd-host'),
    adminHost: adminListen.host,
    adminPort: adminListen.port,
    dataIdleTimeoutMs: numberSetting(config, 'data-idle-timeout'),
    maxConnectionsPerPort: numberSetting(config, 'max-connections-per-port'),
    maxConnectionsPerHubService: numberSetting(config, 'max-connections-per-hub-service'),
    maxHubRequestBodyBytes: numberSetting(config, 'hub-request-max-body-bytes'),
    tlsHandshakeTimeoutMs: numberSetting(config, 'tls-handshake-timeout'),
    tlsLeanBuffers: config['tls-lean-buffers'] === true,
    headersTimeoutMs: numberSetting(config, 'headers-timeout'),
    maxUnauthenticatedConnections: numberSetting(config, 'max-unauthenticated'),
    maxUnauthenticatedPerSource: numberSetting(config, 'max-unauthenticated-per-source'),
    failedAuthBurst: numberSetting(config, 'failed-auth-burst'),
    failedAuthRefillMs: numberSetting(config, 'failed-auth-refill'),
    maxFailedAuthSources: numberSetting(config, 'max-failed-auth-sources'),
    maxSessionsPerSpoke: numberSetting(config, 'max-sessions-per-spoke'),
    logSampleIntervalMs: numberSetting(config, 'log-sample-interval'),
    infoLabels: listSetting(config, 'info-labels'),
  }
  validateExitNodeOptions(options)
  return { resolved, level: stringSetting(config, 'log-level', true), spokesPath, spokes, spokesTextSha256, options, tls, endpointSlices }
}

async function readCertificateAndKey (certPath: string, keyPath: string): Promise<{ certPem: string, keyPem: string }> {
  return { certPem: await readTextFile('tls-cert', certPath), keyPem: await readTextFile('tls-key', keyPath) }
}

/** `--check-config`: what a start would use, secrets redacted, as one JSON document on stdout. */
async function printServerCheck (prepared: PreparedServer): Promise<void> {
  const { tls } = prepared
  const tlsReport = tls === undefined
    ? { mode: 'none (plain ws: TLS must end at a proxy in front)' }
    : tls.kind === 'files'
      ? { mode: 'files', cert: tls.certPath, key: tls.keyPath, certificate: tls.summary }
      : { mode: 'auto', ...await inspectAutoTlsDir(tls.dir, tls.hosts) }
  printLine(JSON.stringify({
    ok: true,
    command: 'server',
    settings: describeConfig(prepared.resolved, SERVER_OPTIONS),
    spokes: prepared.spokes.spokes.map((spoke) => ({
      name: spoke.name,
      tokens: spoke.tokens.length,
      ports: spoke.ports.map((port) => ({ upstream: port.upstream, listen: `${port.listen.host.includes(':') ? `[${port.listen.host}]` : port.listen.host}:${port.listen.port}` })),
    })),
    tls: tlsReport,
    endpointSlices: describeEndpointSlices(prepared.endpointSlices),
  }, null, 2))
}

async function runServer (command: Command, context: CommandContext): Promise<void> {
  const prepared = await prepareServer(command, context)
  if (command.opts<{ checkConfig?: boolean }>().checkConfig === true) {
    await printServerCheck(prepared)
    return
  }
  const { resolved, spokes, spokesPath } = prepared
  const logger = createRootLogger(isLogLevel(prepared.level) ? prepared.level : 'info')
  logger.info({ command: 'server', settings: describeConfig(resolved, SERVER_OPTIONS) }, 'starting')

  const loadTls = async (): Promise<{ certPem: string, keyPem: string } | undefined> => {
    const source = prepared.tls
    if (source === undefined) return undefined
    // Read again on every call (SIGHUP after cert-manager renewed the Secret); exitNode.setTls checks the pair.
    if (source.kind === 'files') return readCertificateAndKey(source.certPath, source.keyPath)
    const material = await ensureAutoTls(source.dir, { hosts: source.hosts })
    logger.info({ dir: source.dir, caSha256: material.caSha256 }, 'auto-tls ready')
    // Serve the CA after the leaf: an agent pinning caSha256 (join token) must find the CA in the chain it is sent.
    return { certPem: `${material.certPem.trimEnd()}\n${material.caPem.trimEnd()}\n`, keyPem: material.keyPem }
  }
  const tls = prepared.tls?.kind === 'files' ? { certPem: prepared.tls.certPem, keyPem: prepared.tls.keyPem } : await loadTls()

  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'spokelink_process_' })
  const slices = prepared.endpointSlices
  const endpointSlices = slices === undefined
    ? undefined
    : { ...slices.options, api: (await import('../kube-endpoint-slice-api.js')).createKubeEndpointSliceApi(slices.kubeConfig, slices.options.namespace) }
  const config = resolved.config
  const clientCertificates = await loadClientCertificateAuthority({
    caCertPath: stringSetting(config, 'client-ca-cert'),
    caKeyPath: stringSetting(config, 'client-ca-key'),
    autoTlsDir: prepared.tls?.kind === 'auto' ? prepared.tls.dir : undefined,
    tls: tls !== undefined,
    spokesPath,
    lifetimeMs: numberSetting(config, 'client-cert-lifetime'),
  })
  const exitNode = createExitNode({ ...prepared.options, tls }, spokes, { logger, registry, endpointSlices, clientCertificates })
  await exitNode.listen()
  // cert-manager renews --tls-cert/--tls-key in place: pick them up without a SIGHUP (SIGHUP still works).
  const tlsWatcher = tls !== undefined && prepared.tls?.kind === 'files'
    ? watchTlsFiles({ certPath: prepared.tls.certPath, keyPath: prepared.tls.keyPath }, tls, (next) => { exitNode.setTls(next) }, logger)
    : undefined
  const watcher = watchSpokesFile(spokesPath, {
    initial: spokes,
    initialTextSha256: prepared.spokesTextSha256,
    onChange: (next) => {
      exitNode.updateSpokes(next)
      logger.info({ spokes: next.spokes.length }, 'spokes file reloaded')
    },
    onError: (err) => {
      // Logged once per broken state; an unreadable file is retried by the watch until a read succeeds.
      if (err.code === 'SLK_ERR_CONFIG_SPOKES_READ') logger.error({ err }, 'spokes file unreadable; retrying, keeping the last good one')
      else logger.error({ err }, 'spokes file rejected; keeping the last good one')
    },
  })
  // SIGHUP: re-read the spokes file and the TLS files now; live sessions stay, new handshakes get the new certificate.
  let reloading = Promise.resolve()
  const reload = async (): Promise<void> => {
    logger.info({ signal: 'SIGHUP' }, 'reload requested')
    const spokesOutcome = await watcher.reread()
    let tlsOutcome = 'none'
    if (tls !== undefined) {
      try {
        const next = await loadTls()
        if (next !== undefined) exitNode.setTls(next)
        tlsOutcome = 'reloaded'
      } catch (err) {
        tlsOutcome = 'failed'
        logger.error({ err }, 'tls reload failed; keeping the current certificate')
      }
    }
    logger.info({ spokes: spokesOutcome, tls: tlsOutcome }, 'reload done')
  }
  const unsubscribe = context.reload?.subscribe(() => { reloading = reloading.then(reload) })
  await untilAborted(context.shutdown)
  unsubscribe?.()
  await reloading
  watcher.close()
  tlsWatcher?.close()
  await exitNode.close()
}

/** `spokelink server`: the exit-node. */
export function serverCommand (context: CommandContext): Command {
  const command = new Command('server').description('run the exit-node: accept agents, expose each spoke on its data-plane ports')
  addOptions(command, SERVER_OPTIONS)
  addCheckConfigOption(command)
  command.action(async () => { await runServer(command, context) })
  return command
}
