import { Command } from 'commander'
import { quoteValue } from '@spokelink/auth'
import { addOptions, resolveCommandConfig } from '../command-options.js'
import type { CommandContext } from '../command-context.js'
import { numberSetting, stringSetting } from '../config.js'
import type { OptionSpec } from '../config.js'
import { CliError } from '../errors.js'
import { printJson, printLine } from '../output.js'
import { formatFleetTable, parseFleet } from '../fleet-table.js'

/** Settings of `spokelink status`. */
export const STATUS_OPTIONS: readonly OptionSpec[] = [
  { name: 'admin', kind: 'string', arg: 'url', default: 'http://127.0.0.1:9464', help: 'the exit-node\'s admin address (--admin-listen), e.g. http://127.0.0.1:9464' },
  { name: 'output', kind: 'choice', arg: 'format', choices: ['text', 'json'], default: 'text', help: 'text (a table) or json (the /v1/spokes answer)' },
  { name: 'timeout', kind: 'duration', arg: 'duration', default: 5000, help: 'how long to wait for the exit-node' },
]

async function runStatus (command: Command, context: CommandContext): Promise<void> {
  const { config } = await resolveCommandConfig(command, STATUS_OPTIONS, context.env)
  const admin = stringSetting(config, 'admin', true)
  let url: URL
  try {
    url = new URL('/v1/spokes', admin)
  } catch {
    throw new CliError('SLK_ERR_USAGE_FLAG', `--admin: expected a URL like http://127.0.0.1:9464, got ${quoteValue(admin)}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError('SLK_ERR_USAGE_FLAG', `--admin: expected an http:// or https:// URL, got ${url.protocol}//`)
  const timeoutMs = numberSetting(config, 'timeout')
  let body: unknown
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    if (res.status !== 200) throw new CliError('SLK_ERR_CLI_STATUS_FETCH', `${url.host}/v1/spokes answered ${res.status}; is --admin the exit-node's --admin-listen address?`)
    body = await res.json()
  } catch (err) {
    if (err instanceof CliError) throw err
    const why = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : err instanceof Error && err.cause instanceof Error ? err.cause.message : 'not a JSON answer'
    throw new CliError('SLK_ERR_CLI_STATUS_FETCH', `cannot read ${url.host}/v1/spokes: ${why}`, { cause: err })
  }
  const fleet = parseFleet(body)
  if (fleet === undefined) throw new CliError('SLK_ERR_CLI_STATUS_FETCH', `${url.host}/v1/spokes: not a spokelink fleet answer`)
  if (stringSetting(config, 'output', true) === 'json') printJson(body)
  else printLine(formatFleetTable(fleet))
}

/** `spokelink status`: the fleet as the exit-node sees it. */
export function statusCommand (context: CommandContext): Command {
  const command = new Command('status').description('print every configured spoke: connected, sessions, agent version, RTT, bytes, last seen, token expiry')
  addOptions(command, STATUS_OPTIONS)
  command.action(async () => { await runStatus(command, context) })
  return command
}
