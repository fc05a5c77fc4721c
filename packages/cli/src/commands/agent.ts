import { Command } from 'commander'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { decodeJoinToken, parseSpokeToken, quoteValue } from '@spokelink/auth'
import {
  BACKOFF_DEFAULTS, ClientIdentity, HUB_SERVICE_LISTENER_DEFAULTS, POLICY_PROXY_DEFAULTS, checkServerUrl, createAgent, parseHttpPolicies, parseHubServiceSpec, parseUpstreamSpec,
  startAgentHealthServer, validateAgentOptions,
} from '@spokelink/agent'
import type { AgentOptions } from '@spokelink/agent'
import { addCheckConfigOption, addOptions, resolveCommandConfig } from '../command-options.js'
import { untilAborted } from '../command-context.js'
import type { CommandContext } from '../command-context.js'
import { describeConfig, listSetting, numberSetting, splitHostPort, stringSetting } from '../config.js'
import type { OptionSpec, ResolvedConfig } from '../config.js'
import { CliError } from '../errors.js'
import { createRootLogger, isLogLevel } from '../logger.js'
import { printLine } from '../output.js'
import { readTextFile } from '../read-text-file.js'
import { readCertificate } from '../tls-files.js'
import { LOG_LEVELS } from './server.js'
import { watchCredentialFile } from '../credential-file.js'
import type { CredentialFile } from '../credential-file.js'

/** Settings of `spokelink agent`. */
export const AGENT_OPTIONS: readonly OptionSpec[] = [
  { name: 'server', kind: 'string', arg: 'url', help: 'exit-node URL, wss://hub.example.com/connect' },
  { name: 'token', kind: 'string', arg: 'token', secret: true, help: 'spoke token slk_<id>_<secret> (prefer --token-file or the env var)' },
  { name: 'token-file', kind: 'string', arg: 'file', help: 'file holding the spoke token; watched (a Secret update), a new token is used on the next connect' },
  { name: 'join', kind: 'string', arg: 'join-token', secret: true, help: 'join token slkj1.… (server, token and CA pin in one string)' },
  { name: 'join-file', kind: 'string', arg: 'file', help: 'file holding the join token (e.g. a mounted Secret); like --token-file it is watched and a new token is used on the next connect' },
  { name: 'upstream', kind: 'list', arg: 'name=host:port', help: 'an upstream this agent may dial (repeatable); nothing else is ever dialed' },
  { name: 'read-only', kind: 'list', arg: 'name', help: 'only let the hub read this Prometheus upstream: GET/HEAD of /federate, /metrics, the query API, /-/healthy, /-/ready (repeatable); anything else gets 403' },
  { name: 'allow', kind: 'list', arg: "name='GET /path,…'", help: 'only these requests reach this HTTP upstream (GET implies HEAD; a trailing /* matches the rest; repeatable); anything else gets 403' },
  { name: 'policy-max-header-bytes', kind: 'count', arg: 'bytes', default: POLICY_PROXY_DEFAULTS.maxHeaderBytes, help: 'under --read-only/--allow: largest request head (request line and headers); more is refused as header_too_large' },
  { name: 'policy-max-body-bytes', kind: 'count', arg: 'bytes', default: POLICY_PROXY_DEFAULTS.maxBodyBytes, help: 'under --read-only/--allow: largest request body (a POST query form, read whole before it is forwarded); more is refused as body_too_large' },
  { name: 'policy-max-headers', kind: 'count', arg: 'n', default: POLICY_PROXY_DEFAULTS.maxHeadersCount, help: 'under --read-only/--allow: most headers in one request; more are refused as header_too_large' },
  { name: 'policy-max-upstream-sockets', kind: 'count', arg: 'n', default: POLICY_PROXY_DEFAULTS.maxUpstreamSockets, help: 'under --read-only/--allow: keep-alive connections to each policed upstream, at most (more requests wait for one)' },
  { name: 'hub-service', kind: 'list', arg: 'name=host:port', help: 'listen here and carry each connection to the hub service NAME (the exit-node\'s spokes file says where it is; repeatable), e.g. remote-write=0.0.0.0:9201' },
  { name: 'hub-service-max-connections', kind: 'count', arg: 'n', default: HUB_SERVICE_LISTENER_DEFAULTS.maxConnectionsPerHubService, help: 'local connections per --hub-service at once; more are reset at accept' },
  { name: 'ca-file', kind: 'string', arg: 'file', help: 'extra CA certificate (PEM) to trust for wss' },
  { name: 'state-dir', kind: 'string', arg: 'dir', help: 'where the agent keeps its client key and certificate (spokes with requireClientCert); the key is made here and never sent' },
  { name: 'insecure', kind: 'boolean', help: 'allow plain ws:// to a non-loopback exit-node (TLS ends at a proxy you trust)' },
  { name: 'keepalive', kind: 'duration', arg: 'duration', default: 15_000, help: 'ping interval; a session missing two pongs is closed' },
  { name: 'health-listen', kind: 'address', arg: 'addr', help: 'serve /healthz, /readyz and /metrics on this address' },
  { name: 'name', kind: 'string', arg: 'name', help: 'agent name shown in the exit-node logs (default: hostname)' },
  { name: 'label', kind: 'list', arg: 'key=value', help: 'label sent in the hello (repeatable)' },
  { name: 'restart-backoff-max', kind: 'duration', arg: 'duration', default: BACKOFF_DEFAULTS.plannedMaxDelayMs, help: 'after the exit-node closed the session for a restart or a reconfiguration (1001/1012), retries for a minute are jittered within 2 s, 4 s, then this, instead of growing towards 30 s; N agents then send ~2N÷this attempts per second' },
  { name: 'permanent-failure-backoff-max', kind: 'duration', arg: 'duration', default: 300_000, help: 'backoff cap after a refusal only an operator can fix (revoked/invalid token, CA pin, protocol version)' },
  { name: 'log-level', kind: 'choice', arg: 'level', choices: LOG_LEVELS, default: 'info', help: 'pino log level' },
]

function parseLabels (items: string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const item of items) {
    const eq = item.indexOf('=')
    if (eq <= 0) throw new CliError('SLK_ERR_USAGE_FLAG', `--label: expected key=value, got ${quoteValue(item)}`)
    labels[item.slice(0, eq)] = item.slice(eq + 1)
  }
  return labels
}

interface Credentials {
  server: string
  token: string
  caSha256: string | undefined
  /** Which setting the token came from, for `--check-config`. */
  from: 'join' | 'join-file' | 'token' | 'token-file'
}

async function resolveCredentials (config: ResolvedConfig['config']): Promise<Credentials> {
  const join = stringSetting(config, 'join')
  const joinFile = stringSetting(config, 'join-file')
  const tokenFlag = stringSetting(config, 'token')
  const tokenFile = stringSetting(config, 'token-file')
  if ([join, joinFile, tokenFlag, tokenFile].filter((value) => value !== undefined).length > 1) {
    throw new CliError('SLK_ERR_USAGE_CONFLICT', 'give one of --join, --join-file, --token or --token-file')
  }
  if (join !== undefined || joinFile !== undefined) {
    const text = joinFile !== undefined ? (await readTextFile('join-file', joinFile)).trim() : join ?? ''
    const decoded = decodeJoinToken(text)
    return { server: stringSetting(config, 'server') ?? decoded.server, token: decoded.token, caSha256: decoded.caSha256, from: joinFile !== undefined ? 'join-file' : 'join' }
  }
  const token = tokenFile !== undefined ? (await readTextFile('token-file', tokenFile)).trim() : tokenFlag
  if (token === undefined) throw new CliError('SLK_ERR_USAGE_MISSING', 'a token is required: --token, --token-file, --join or --join-file (or SPOKELINK_TOKEN)')
  return { server: stringSetting(config, 'server', true), token, caSha256: undefined, from: tokenFile !== undefined ? 'token-file' : 'token' }
}

/** The agent settings a start uses, resolved and validated; nothing is dialed yet. */
interface PreparedAgent {
  resolved: ResolvedConfig
  level: string
  credentials: Credentials
  caPath: string | undefined
  health: { host: string, port: number } | undefined
  options: AgentOptions
}

/**
 * Everything a start checks before it dials: flags, env and `--config`, the token or join token (and the file
 * holding it), the upstreams, `--ca-file`, labels, and the agent options (URL, `--insecure`, CA pin).
 * @throws CliError (exit 2), AgentError SLK_ERR_AGENT_INVALID_OPTION / SLK_ERR_AGENT_INSECURE, AuthError SLK_ERR_AUTH_JOIN_TOKEN_MALFORMED
 */
async function prepareAgent (command: Command, context: CommandContext): Promise<PreparedAgent> {
  const resolved = await resolveCommandConfig(command, AGENT_OPTIONS, context.env)
  const { config } = resolved
  const credentials = await resolveCredentials(config)
  const upstreams = listSetting(config, 'upstream').map(parseUpstreamSpec)
  const policies = parseHttpPolicies(listSetting(config, 'read-only'), listSetting(config, 'allow'))
  const hubServices = listSetting(config, 'hub-service').map(parseHubServiceSpec)
  const caPath = stringSetting(config, 'ca-file')
  const caPem = caPath === undefined ? undefined : await readTextFile('ca-file', caPath)
  if (caPath !== undefined && caPem !== undefined) readCertificate('ca-file', caPath, caPem)
  const healthText = stringSetting(config, 'health-listen')
  const health = healthText === undefined ? undefined : splitHostPort(healthText)
  const keepaliveIntervalMs = numberSetting(config, 'keepalive')
  const agentName = stringSetting(config, 'name')
  const options: AgentOptions = {
    server: credentials.server,
    token: credentials.token,
    upstreams,
    policies,
    policy: {
      maxHeaderBytes: numberSetting(config, 'policy-max-header-bytes'),
      maxBodyBytes: numberSetting(config, 'policy-max-body-bytes'),
      maxHeadersCount: numberSetting(config, 'policy-max-headers'),
      maxUpstreamSockets: numberSetting(config, 'policy-max-upstream-sockets'),
    },
    caPem,
    caSha256: credentials.caSha256,
    insecure: config.insecure === true,
    keepaliveIntervalMs,
    keepaliveTimeoutMs: 2 * keepaliveIntervalMs,
    labels: parseLabels(listSetting(config, 'label')),
    permanentFailureMaxDelayMs: numberSetting(config, 'permanent-failure-backoff-max'),
    backoff: { plannedMaxDelayMs: numberSetting(config, 'restart-backoff-max') },
    hubServices,
    hubService: { maxConnectionsPerHubService: numberSetting(config, 'hub-service-max-connections') },
    ...(agentName === undefined ? {} : { agentName }),
  }
  validateAgentOptions(options)
  return { resolved, level: stringSetting(config, 'log-level', true), credentials, caPath, health, options }
}

/** `--check-config`: what a start would use, secrets redacted, as one JSON document on stdout. */
function printAgentCheck (prepared: PreparedAgent): void {
  const { credentials, options } = prepared
  // The shape of a token is checked here too: a start would only learn it from the exit-node's 401.
  const { id } = parseSpokeToken(credentials.token)
  printLine(JSON.stringify({
    ok: true,
    command: 'agent',
    settings: describeConfig(prepared.resolved, AGENT_OPTIONS),
    server: checkServerUrl(options.server, options.insecure === true).href,
    credentials: { from: credentials.from, tokenId: id, caPinned: credentials.caSha256 !== undefined, caSha256: credentials.caSha256, caFile: prepared.caPath },
    upstreams: options.upstreams.map((upstream) => `${upstream.name}=${upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host}:${upstream.port}`),
    labels: options.labels,
    hubServices: (options.hubServices ?? []).map((hub) => `${hub.name}=${hub.host.includes(':') ? `[${hub.host}]` : hub.host}:${hub.port}`),
    healthListen: prepared.health === undefined ? undefined : `${prepared.health.host}:${prepared.health.port}`,
  }, null, 2))
}

async function runAgent (command: Command, context: CommandContext): Promise<void> {
  const prepared = await prepareAgent(command, context)
  if (command.opts<{ checkConfig?: boolean }>().checkConfig === true) {
    printAgentCheck(prepared)
    return
  }
  const { resolved, credentials, health, options } = prepared
  const logger = createRootLogger(isLogLevel(prepared.level) ? prepared.level : 'info')
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'spokelink_process_' })
  const stateDir = stringSetting(resolved.config, 'state-dir')
  const clientIdentity = stateDir === undefined ? undefined : await ClientIdentity.open(stateDir)
  const agent = createAgent({ ...options, clientIdentity }, { logger, registry })
  const tokenFile = stringSetting(resolved.config, 'token-file')
  const joinFile = stringSetting(resolved.config, 'join-file')
  // Only the token is swapped from a re-read join token: a new server URL or CA pin needs a restart.
  const rereadToken = async (): Promise<string | undefined> => {
    if (tokenFile !== undefined) return (await readTextFile('token-file', tokenFile)).trim()
    if (joinFile !== undefined) return decodeJoinToken((await readTextFile('join-file', joinFile)).trim()).token
    return undefined
  }
  // SIGHUP: re-read --token-file or --join-file (a rotated Secret) for the next connection; the live session keeps its token.
  // Subscribed before anything is logged or dialed: a SIGHUP that finds no subscriber stops the process.
  const unsubscribe = context.reload?.subscribe(() => {
    logger.info({ signal: 'SIGHUP' }, 'reload requested')
    if (tokenFile === undefined && joinFile === undefined) {
      logger.info({ tokenFile: false }, 'reload done')
      return
    }
    rereadToken().then((token) => {
      if (token !== undefined) agent.setToken(token)
      logger.info({ tokenFile: 'reloaded' }, 'reload done')
    }).catch((err: unknown) => {
      logger.error({ err }, 'token file reload failed; keeping the current token')
    })
  })
  logger.info({ command: 'agent', settings: describeConfig(resolved, AGENT_OPTIONS), server: new URL(options.server).host, caPinned: credentials.caSha256 !== undefined }, 'starting')
  const healthServer = health === undefined ? undefined : await startAgentHealthServer(health, agent, { registry, logger })
  // The credential file is watched too (a Kubernetes Secret update swaps its ..data symlink): the new token is used
  // from the next connection on, the live session keeps the one it authenticated with.
  const credentialFile: CredentialFile | undefined = tokenFile !== undefined
    ? { flag: 'token-file', path: tokenFile }
    : joinFile !== undefined ? { flag: 'join-file', path: joinFile } : undefined
  const fileWatcher = credentialFile === undefined
    ? undefined
    : watchCredentialFile(credentialFile, {
      initialText: await readTextFile(credentialFile.flag, credentialFile.path),
      server: options.server,
      caSha256: credentials.caSha256,
    }, (next) => { agent.setToken(next) }, logger)
  await agent.listenHubServices()
  agent.start()
  await untilAborted(context.shutdown)
  unsubscribe?.()
  fileWatcher?.close()
  logger.info('shutting down')
  await agent.close()
  healthServer?.close()
}

/** `spokelink agent`: the spoke side. */
export function agentCommand (context: CommandContext): Command {
  const command = new Command('agent').description('run an agent: dial out to the exit-node and serve the named upstreams')
  addOptions(command, AGENT_OPTIONS)
  addCheckConfigOption(command)
  command.action(async () => { await runAgent(command, context) })
  return command
}
