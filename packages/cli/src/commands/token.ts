import { Command } from 'commander'
import {
  SPOKES_FILE_LOCK_DEFAULTS,
  addSpokeToken,
  certificateSha256,
  createSpokeToken,
  editSpokesFile,
  encodeJoinToken,
  listSpokeTokens,
  parseSpokesConfig,
  revokeSpokeToken,
} from '@spokelink/auth'
import type { SpokesFileLockOptions, TokenEntry } from '@spokelink/auth'
import { addOptions, resolveCommandConfig } from '../command-options.js'
import type { CommandContext } from '../command-context.js'
import { numberSetting, stringSetting } from '../config.js'
import type { OptionSpec, ResolvedConfig } from '../config.js'
import { CliError } from '../errors.js'
import { printJson, printLine } from '../output.js'
import { readTextFile } from '../read-text-file.js'

const SPOKES: OptionSpec = { name: 'spokes', kind: 'string', arg: 'file', help: 'spokes file to edit (the exit-node picks changes up by itself)' }
const OUTPUT: OptionSpec = { name: 'output', kind: 'choice', arg: 'format', choices: ['text', 'json'], default: 'text', help: 'text or json (one JSON object)' }
const LOCK_TIMEOUT: OptionSpec = {
  name: 'lock-timeout',
  kind: 'duration',
  arg: 'duration',
  default: SPOKES_FILE_LOCK_DEFAULTS.lockTimeoutMs,
  help: 'how long to wait for another edit of the spokes file (its <file>.lock) before failing',
}
const STALE_LOCK: OptionSpec = {
  name: 'stale-lock',
  kind: 'duration',
  arg: 'duration',
  default: SPOKES_FILE_LOCK_DEFAULTS.staleLockMs,
  help: 'a lock file older than this (or whose process is gone) is abandoned and broken',
}

/** Settings of `spokelink token create`. */
export const TOKEN_CREATE_OPTIONS: readonly OptionSpec[] = [
  SPOKES,
  { name: 'spoke', kind: 'string', arg: 'name', help: 'spoke the token is for' },
  { name: 'server', kind: 'string', arg: 'url', help: 'exit-node URL to put in the join token' },
  { name: 'ca-file', kind: 'string', arg: 'file', help: 'exit-node CA (PEM) to pin in the join token, e.g. <auto-tls dir>/ca.crt' },
  { name: 'expires', kind: 'duration', arg: 'duration', help: 'lifetime, e.g. 90d (default: no expiry)' },
  OUTPUT,
  LOCK_TIMEOUT,
  STALE_LOCK,
]

const TOKEN_LIST_OPTIONS: readonly OptionSpec[] = [SPOKES, OUTPUT]
/** Settings of `spokelink token revoke`. */
export const TOKEN_REVOKE_OPTIONS: readonly OptionSpec[] = [SPOKES, OUTPUT, LOCK_TIMEOUT, STALE_LOCK]

/** Every edit of the spokes file goes through editSpokesFile with these, so concurrent edits never lose one another. */
function lockOptions (config: ResolvedConfig['config']): SpokesFileLockOptions {
  return { lockTimeoutMs: numberSetting(config, 'lock-timeout'), staleLockMs: numberSetting(config, 'stale-lock') }
}

async function readSpokes (config: ResolvedConfig['config']): Promise<{ path: string, text: string }> {
  const path = stringSetting(config, 'spokes', true)
  return { path, text: await readTextFile('spokes', path) }
}

async function createToken (command: Command, context: CommandContext): Promise<void> {
  const { config } = await resolveCommandConfig(command, TOKEN_CREATE_OPTIONS, context.env)
  const spokesPath = stringSetting(config, 'spokes', true)
  const spoke = stringSetting(config, 'spoke', true)
  const server = stringSetting(config, 'server')
  const caPath = stringSetting(config, 'ca-file')
  if (caPath !== undefined && server === undefined) throw new CliError('SLK_ERR_USAGE_MISSING', '--ca-file pins the CA in a join token, which needs --server')
  const now = new Date()
  const created = createSpokeToken()
  const expiresInMs = config.expires === undefined ? undefined : numberSetting(config, 'expires')
  const entry: TokenEntry = { id: created.id, sha256: created.sha256, created: now }
  if (expiresInMs !== undefined) entry.expires = new Date(now.getTime() + expiresInMs)
  const caSha256 = caPath === undefined ? undefined : certificateSha256(await readTextFile('ca-file', caPath))
  const joinToken = server === undefined ? undefined : encodeJoinToken({ server, token: created.token, ...(caSha256 === undefined ? {} : { caSha256 }) })
  await editSpokesFile(spokesPath, (text) => addSpokeToken(text, spoke, entry, spokesPath), lockOptions(config))
  if (config.output === 'json') {
    printJson({ token: created.token, joinToken, id: created.id, spoke, expires: entry.expires?.toISOString() })
    return
  }
  printLine(`token ${created.id} added to spoke ${spoke} in ${spokesPath}${entry.expires === undefined ? '' : ` (expires ${entry.expires.toISOString()})`}`)
  printLine(`token: ${created.token}`)
  if (joinToken !== undefined) printLine(`join token: ${joinToken}`)
  printLine('This is the only time the secret is shown; the spokes file keeps only its sha256.')
}

async function listTokens (command: Command, context: CommandContext): Promise<void> {
  const { config } = await resolveCommandConfig(command, TOKEN_LIST_OPTIONS, context.env)
  const spokes = await readSpokes(config)
  const rows = listSpokeTokens(parseSpokesConfig(spokes.text, spokes.path))
  const now = Date.now()
  const stateOf = (row: typeof rows[number]): string =>
    row.revoked ? 'revoked' : row.expires !== undefined && row.expires.getTime() <= now ? 'expired' : 'active'
  if (config.output === 'json') {
    printJson({ tokens: rows.map((row) => ({ spoke: row.spoke, id: row.id, state: stateOf(row), created: row.created?.toISOString(), expires: row.expires?.toISOString() })) })
    return
  }
  const table = [['SPOKE', 'ID', 'STATE', 'CREATED', 'EXPIRES'], ...rows.map((row) => [row.spoke, row.id, stateOf(row), row.created?.toISOString() ?? '-', row.expires?.toISOString() ?? 'never'])]
  const widths = table[0]?.map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length))) ?? []
  for (const row of table) printLine(row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd())
}

async function revokeToken (command: Command, context: CommandContext, id: string): Promise<void> {
  const { config } = await resolveCommandConfig(command, TOKEN_REVOKE_OPTIONS, context.env)
  const spokesPath = stringSetting(config, 'spokes', true)
  await editSpokesFile(spokesPath, (text) => revokeSpokeToken(text, id, spokesPath), lockOptions(config))
  if (config.output === 'json') printJson({ revoked: id })
  else printLine(`token ${id} revoked in ${spokesPath}; its live sessions close once the exit-node reloads the file`)
}

/** `spokelink token create|list|revoke`: per-spoke tokens in the spokes file. */
export function tokenCommand (context: CommandContext): Command {
  const token = new Command('token').description('create, list and revoke spoke tokens in a spokes file')
  const create = addOptions(new Command('create').description('create a token for a spoke; prints it (and a join token with --server) once'), TOKEN_CREATE_OPTIONS)
  create.action(async () => { await createToken(create, context) })
  const list = addOptions(new Command('list').description('list tokens (ids, state, expiry; never secrets)'), TOKEN_LIST_OPTIONS)
  list.action(async () => { await listTokens(list, context) })
  const revoke = addOptions(new Command('revoke').description('revoke a token by id; live sessions using it are closed'), TOKEN_REVOKE_OPTIONS)
  revoke.argument('<id>', 'token id (the part after slk_)')
  revoke.action(async (id: string) => { await revokeToken(revoke, context, id) })
  token.addCommand(create).addCommand(list).addCommand(revoke)
  return token
}
