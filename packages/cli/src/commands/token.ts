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
  revokeCertificateSerial,
  revokeSpokeToken,
  rotateSpokeToken,
} from '@spokelink/auth'
import type { SpokesFileLockOptions, TokenEntry } from '@spokelink/auth'
import { addOptions, resolveCommandConfig } from '../command-options.js'
import type { CommandContext } from '../command-context.js'
import { numberSetting, stringSetting } from '../config.js'
import type { OptionSpec, ResolvedConfig } from '../config.js'
import { CliError } from '../errors.js'
import { printJson, printLine, printNotice } from '../output.js'
import { readTextFile } from '../read-text-file.js'
import { serverHostMismatch } from '../server-host-check.js'

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

/** Settings of `spokelink token rotate`: those of `create` plus how long the old tokens keep working. */
export const TOKEN_ROTATE_OPTIONS: readonly OptionSpec[] = [
  ...TOKEN_CREATE_OPTIONS,
  { name: 'overlap', kind: 'duration', arg: 'duration', default: 86_400_000, help: 'how long the spoke\'s old tokens keep working (their expiry is only ever shortened), e.g. 24h; 0s ends them now' },
]

const TOKEN_LIST_OPTIONS: readonly OptionSpec[] = [SPOKES, OUTPUT]
/** Settings of `spokelink token revoke`. */
export const TOKEN_REVOKE_OPTIONS: readonly OptionSpec[] = [SPOKES, OUTPUT, LOCK_TIMEOUT, STALE_LOCK]

/** Settings of `spokelink token revoke-cert`. */
export const TOKEN_REVOKE_CERT_OPTIONS: readonly OptionSpec[] = [SPOKES, { name: 'spoke', kind: 'string', arg: 'name', help: 'spoke the certificate was issued to' }, OUTPUT, LOCK_TIMEOUT, STALE_LOCK]

/** Every edit of the spokes file goes through editSpokesFile with these, so concurrent edits never lose one another. */
function lockOptions (config: ResolvedConfig['config']): SpokesFileLockOptions {
  return { lockTimeoutMs: numberSetting(config, 'lock-timeout'), staleLockMs: numberSetting(config, 'stale-lock') }
}

async function readSpokes (config: ResolvedConfig['config']): Promise<{ path: string, text: string }> {
  const path = stringSetting(config, 'spokes', true)
  return { path, text: await readTextFile('spokes', path) }
}

/** What `token create` and `token rotate` share: a new token entry, its secret and the join token to print. */
interface NewToken {
  spokesPath: string
  spoke: string
  entry: TokenEntry
  token: string
  joinToken: string | undefined
  /** Why agents will refuse `--server` (its host is not in the exit-node certificate beside `--ca-file`). */
  hostWarning: string | undefined
}

async function newToken (config: ResolvedConfig['config'], now: Date): Promise<NewToken> {
  const spokesPath = stringSetting(config, 'spokes', true)
  const spoke = stringSetting(config, 'spoke', true)
  const server = stringSetting(config, 'server')
  const caPath = stringSetting(config, 'ca-file')
  if (caPath !== undefined && server === undefined) throw new CliError('SLK_ERR_USAGE_MISSING', '--ca-file pins the CA in a join token, which needs --server')
  const created = createSpokeToken()
  const expiresInMs = config.expires === undefined ? undefined : numberSetting(config, 'expires')
  const entry: TokenEntry = { id: created.id, sha256: created.sha256, created: now }
  if (expiresInMs !== undefined) entry.expires = new Date(now.getTime() + expiresInMs)
  const caSha256 = caPath === undefined ? undefined : certificateSha256(await readTextFile('ca-file', caPath))
  const joinToken = server === undefined ? undefined : encodeJoinToken({ server, token: created.token, ...(caSha256 === undefined ? {} : { caSha256 }) })
  // Checked before the edit, but only a warning: the exit-node may be restarted with the host added before any agent dials.
  const hostWarning = server === undefined || caPath === undefined ? undefined : await serverHostMismatch(server, caPath)
  return { spokesPath, spoke, entry, token: created.token, joinToken, hostWarning }
}

function printNewToken (config: ResolvedConfig['config'], made: NewToken, extra: Record<string, unknown> = {}): void {
  const { spokesPath, spoke, entry, token, joinToken, hostWarning } = made
  if (hostWarning !== undefined) printNotice(`warning: ${hostWarning}`)
  if (config.output === 'json') {
    printJson({ token, joinToken, id: entry.id, spoke, expires: entry.expires?.toISOString(), ...extra })
    return
  }
  printLine(`token ${entry.id} added to spoke ${spoke} in ${spokesPath}${entry.expires === undefined ? '' : ` (expires ${entry.expires.toISOString()})`}`)
  printLine(`token: ${token}`)
  if (joinToken !== undefined) printLine(`join token: ${joinToken}`)
  printLine('This is the only time the secret is shown; the spokes file keeps only its sha256.')
}

async function createToken (command: Command, context: CommandContext): Promise<void> {
  const { config } = await resolveCommandConfig(command, TOKEN_CREATE_OPTIONS, context.env)
  const made = await newToken(config, new Date())
  await editSpokesFile(made.spokesPath, (text) => addSpokeToken(text, made.spoke, made.entry, made.spokesPath), lockOptions(config))
  printNewToken(config, made)
}

async function rotateToken (command: Command, context: CommandContext): Promise<void> {
  const { config } = await resolveCommandConfig(command, TOKEN_ROTATE_OPTIONS, context.env)
  const now = new Date()
  const made = await newToken(config, now)
  const oldTokensExpire = new Date(now.getTime() + numberSetting(config, 'overlap'))
  let shortened: string[] = []
  await editSpokesFile(made.spokesPath, (text) => {
    // Runs under the lock on the text read under it; the last run is the one written.
    const rotation = rotateSpokeToken(text, made.spoke, made.entry, oldTokensExpire, made.spokesPath)
    shortened = rotation.shortened
    return rotation.text
  }, lockOptions(config))
  printNewToken(config, made, { oldTokens: shortened, oldTokensExpire: oldTokensExpire.toISOString() })
  if (config.output !== 'json') {
    printLine(shortened.length === 0
      ? `no other live token of spoke ${made.spoke} to phase out`
      : `old token${shortened.length === 1 ? ' ' : 's '}${shortened.join(', ')} ${shortened.length === 1 ? 'stops' : 'stop'} working at ${oldTokensExpire.toISOString()}; ${shortened.length === 1 ? 'its' : 'their'} sessions close then`)
  }
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

async function revokeCertificate (command: Command, context: CommandContext, serial: string): Promise<void> {
  const { config } = await resolveCommandConfig(command, TOKEN_REVOKE_CERT_OPTIONS, context.env)
  const spokesPath = stringSetting(config, 'spokes', true)
  const spoke = stringSetting(config, 'spoke', true)
  await editSpokesFile(spokesPath, (text) => revokeCertificateSerial(text, spoke, serial, spokesPath), lockOptions(config))
  const normalized = serial.toLowerCase()
  if (config.output === 'json') printJson({ revokedSerial: normalized, spoke })
  else printLine(`certificate ${normalized} of spoke ${spoke} revoked in ${spokesPath}; its live sessions close once the exit-node reloads the file`)
}

/** `spokelink token create|list|revoke`: per-spoke tokens in the spokes file. */
export function tokenCommand (context: CommandContext): Command {
  const token = new Command('token').description('create, rotate, list and revoke spoke tokens in a spokes file')
  const create = addOptions(new Command('create').description('create a token for a spoke; prints it (and a join token with --server) once'), TOKEN_CREATE_OPTIONS)
  create.action(async () => { await createToken(create, context) })
  const list = addOptions(new Command('list').description('list tokens (ids, state, expiry; never secrets)'), TOKEN_LIST_OPTIONS)
  list.action(async () => { await listTokens(list, context) })
  const revoke = addOptions(new Command('revoke').description('revoke a token by id; live sessions using it are closed'), TOKEN_REVOKE_OPTIONS)
  revoke.argument('<id>', 'token id (the part after slk_)')
  revoke.action(async (id: string) => { await revokeToken(revoke, context, id) })
  const rotate = addOptions(new Command('rotate').description('add a new token to a spoke and end its other tokens after --overlap; prints the new one once'), TOKEN_ROTATE_OPTIONS)
  rotate.action(async () => { await rotateToken(rotate, context) })
  const revokeCert = addOptions(new Command('revoke-cert').description('revoke a client certificate by serial (spokes with requireClientCert); its live sessions are closed'), TOKEN_REVOKE_CERT_OPTIONS)
  revokeCert.argument('<serial>', 'certificate serial in hex (the exit-node logs it when it issues one; certSerial in the spokes file)')
  revokeCert.action(async (serial: string) => { await revokeCertificate(revokeCert, context, serial) })
  token.addCommand(create).addCommand(rotate).addCommand(list).addCommand(revoke).addCommand(revokeCert)
  return token
}
