import { Command } from 'commander'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { decodeJoinToken, quoteValue } from '@spokelink/auth'
import { createAgent, parseHttpPolicies, parseUpstreamSpec, startAgentHealthServer } from '@spokelink/agent'
import { addOptions, resolveCommandConfig } from '../command-options.js'
import { untilAborted } from '../command-context.js'
import type { CommandContext } from '../command-context.js'
import { describeConfig, listSetting, numberSetting, splitHostPort, stringSetting } from '../config.js'
import type { OptionSpec } from '../config.js'
import { CliError } from '../errors.js'
import { createRootLogger, isLogLevel } from '../logger.js'
import { readTextFile } from '../read-text-file.js'
import { LOG_LEVELS } from './server.js'

/** Settings of `spokelink agent`. */
export const AGENT_OPTIONS: readonly OptionSpec[] = [
  { name: 'server', kind: 'string', arg: 'url', help: 'exit-node URL, wss://hub.example.com/connect' },
  { name: 'token', kind: 'string', arg: 'token', secret: true, help: 'spoke token slk_<id>_<secret> (prefer --token-file or the env var)' },
  { name: 'token-file', kind: 'string', arg: 'file', help: 'file holding the spoke token' },
  { name: 'join', kind: 'string', arg: 'join-token', secret: true, help: 'join token slkj1.… (server, token and CA pin in one string)' },
  { name: 'upstream', kind: 'list', arg: 'name=host:port', help: 'an upstream this agent may dial (repeatable); nothing else is ever dialed' },
  { name: 'read-only', kind: 'list', arg: 'name', help: 'only let the hub read this Prometheus upstream: GET/HEAD of /federate, /metrics, the query API, /-/healthy, /-/ready (repeatable); anything else gets 403' },
  { name: 'allow', kind: 'list', arg: "name='GET /path,…'", help: 'only these requests reach this HTTP upstream (GET implies HEAD; a trailing /* matches the rest; repeatable); anything else gets 403' },
  { name: 'ca-file', kind: 'string', arg: 'file', help: 'extra CA certificate (PEM) to trust for wss' },
  { name: 'insecure', kind: 'boolean', help: 'allow plain ws:// to a non-loopback exit-node (TLS ends at a proxy you trust)' },
  { name: 'keepalive', kind: 'duration', arg: 'duration', default: 15_000, help: 'ping interval; a session missing two pongs is closed' },
  { name: 'health-listen', kind: 'address', arg: 'addr', help: 'serve /healthz, /readyz and /metrics on this address' },
  { name: 'name', kind: 'string', arg: 'name', help: 'agent name shown in the exit-node logs (default: hostname)' },
  { name: 'label', kind: 'list', arg: 'key=value', help: 'label sent in the hello (repeatable)' },
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

async function resolveCredentials (config: Readonly<Record<string, unknown>>): Promise<{ server: string, token: string, caSha256: string | undefined }> {
  const settings = config as Parameters<typeof stringSetting>[0]
  const join = stringSetting(settings, 'join')
  const tokenFlag = stringSetting(settings, 'token')
  const tokenFile = stringSetting(settings, 'token-file')
  if ([join, tokenFlag, tokenFile].filter((value) => value !== undefined).length > 1) {
    throw new CliError('SLK_ERR_USAGE_CONFLICT', 'give one of --join, --token or --token-file')
  }
  if (join !== undefined) {
    const decoded = decodeJoinToken(join)
    return { server: stringSetting(settings, 'server') ?? decoded.server, token: decoded.token, caSha256: decoded.caSha256 }
  }
  const token = tokenFile !== undefined ? (await readTextFile('token-file', tokenFile)).trim() : tokenFlag
  if (token === undefined) throw new CliError('SLK_ERR_USAGE_MISSING', 'a token is required: --token, --token-file or --join (or SPOKELINK_TOKEN)')
  return { server: stringSetting(settings, 'server', true), token, caSha256: undefined }
}

async function runAgent (command: Command, context: CommandContext): Promise<void> {
  const resolved = await resolveCommandConfig(command, AGENT_OPTIONS, context.env)
  const { config } = resolved
  const { server, token, caSha256 } = await resolveCredentials(config)
  const upstreams = listSetting(config, 'upstream').map(parseUpstreamSpec)
  const policies = parseHttpPolicies(listSetting(config, 'read-only'), listSetting(config, 'allow'))
  const caPath = stringSetting(config, 'ca-file')
  const caPem = caPath === undefined ? undefined : await readTextFile('ca-file', caPath)
  const healthText = stringSetting(config, 'health-listen')
  const health = healthText === undefined ? undefined : splitHostPort(healthText)
  const level = stringSetting(config, 'log-level', true)
  const logger = createRootLogger(isLogLevel(level) ? level : 'info')
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'spokelink_process_' })
  const keepaliveIntervalMs = numberSetting(config, 'keepalive')
  const agent = createAgent({
    server,
    token,
    upstreams,
    policies,
    caPem,
    caSha256,
    insecure: config.insecure === true,
    keepaliveIntervalMs,
    keepaliveTimeoutMs: 2 * keepaliveIntervalMs,
    labels: parseLabels(listSetting(config, 'label')),
    ...(stringSetting(config, 'name') === undefined ? {} : { agentName: stringSetting(config, 'name') }),
  }, { logger, registry })
  logger.info({ command: 'agent', settings: describeConfig(resolved, AGENT_OPTIONS), server: new URL(server).host, caPinned: caSha256 !== undefined }, 'starting')
  const healthServer = health === undefined ? undefined : await startAgentHealthServer(health, agent, { registry, logger })
  agent.start()
  const tokenFile = stringSetting(config, 'token-file')
  // SIGHUP: re-read --token-file (a rotated Secret) for the next connection; the live session keeps its token.
  const unsubscribe = context.reload?.subscribe(() => {
    logger.info({ signal: 'SIGHUP' }, 'reload requested')
    if (tokenFile === undefined) {
      logger.info({ tokenFile: false }, 'reload done')
      return
    }
    readTextFile('token-file', tokenFile).then((text) => {
      agent.setToken(text.trim())
      logger.info({ tokenFile: 'reloaded' }, 'reload done')
    }).catch((err: unknown) => {
      logger.error({ err }, 'token file reload failed; keeping the current token')
    })
  })
  await untilAborted(context.shutdown)
  unsubscribe?.()
  logger.info('shutting down')
  await agent.close()
  healthServer?.close()
}

/** `spokelink agent`: the spoke side. */
export function agentCommand (context: CommandContext): Command {
  const command = new Command('agent').description('run an agent: dial out to the exit-node and serve the named upstreams')
  addOptions(command, AGENT_OPTIONS)
  command.action(async () => { await runAgent(command, context) })
  return command
}
