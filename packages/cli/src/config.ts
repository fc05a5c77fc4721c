import { parse as parseYaml } from 'yaml'
import { quoteValue, redactSecrets } from '@spokelink/auth'
import { parseDuration } from './duration.js'
import { CliError } from './errors.js'

/** How a setting's text is read. */
export type OptionKind = 'string' | 'duration' | 'boolean' | 'list' | 'address' | 'choice' | 'count'

/** One setting of a command: its flag name, kind and default. */
export interface OptionSpec {
  /** The flag without dashes (`tls-cert`); the env var is `SPOKELINK_TLS_CERT`, the file key `tls-cert`. */
  name: string
  kind: OptionKind
  default?: ConfigValue
  /** Redacted when the effective config is logged. */
  secret?: boolean
  /** For `choice`. */
  choices?: readonly string[]
  /** One line of `--help`. */
  help: string
  /** Placeholder in `--help` (`<addr>`); booleans have none. */
  arg?: string
}

/** A resolved setting: text, milliseconds, a flag or a list. */
export type ConfigValue = string | number | boolean | string[] | undefined

/** Where a setting's value came from. */
export type ConfigSource = 'flag' | 'env' | 'file' | 'default'

/** What {@link resolveConfig} reads; plain data so it is tested without touching the process. */
export interface ResolveConfigInput {
  specs: readonly OptionSpec[]
  /** Values given on the command line only (not commander defaults), keyed by flag name. */
  flags: Readonly<Record<string, unknown>>
  env: Readonly<Record<string, string | undefined>>
  /** Text of `--config FILE` (YAML map of flag names to values), with its path for messages. */
  file?: { path: string, text: string } | undefined
}

/** The effective settings and where each came from. */
export interface ResolvedConfig {
  config: Readonly<Record<string, ConfigValue>>
  sources: Readonly<Record<string, ConfigSource>>
}

/** `SPOKELINK_<FLAG>` for a flag name. */
export function envNameOf (name: string): string {
  return `SPOKELINK_${name.toUpperCase().replaceAll('-', '_')}`
}

function describe (name: string, source: ConfigSource, filePath?: string): string {
  switch (source) {
    case 'flag': return `--${name} (flag)`
    case 'env': return `${envNameOf(name)} (env)`
    case 'file': return `${name} (${filePath ?? 'config file'})`
    case 'default': return `--${name} (default)`
  }
}

const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]*):(\d{1,5})$/

/** Splits `host:port` (`[::1]:8123`, `:8123` = all interfaces); undefined when it is not one. */
export function splitHostPort (text: string): { host: string, port: number } | undefined {
  const match = ADDRESS.exec(text)
  if (match === null) return undefined
  const port = Number(match[2])
  if (!Number.isInteger(port) || port > 65535) return undefined
  const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1')
  return { host: host === '' ? '0.0.0.0' : host, port }
}

function convert (spec: OptionSpec, raw: unknown, where: string): ConfigValue {
  const fail = (expected: string): never => {
    throw new CliError('SLK_ERR_USAGE_FLAG', `${where}: expected ${expected}, got ${spec.secret === true ? '"[redacted]"' : quoteValue(raw)}`)
  }
  switch (spec.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw === '') return fail('a non-empty value')
      return raw
    case 'duration': {
      if (typeof raw === 'number') return raw
      const ms = typeof raw === 'string' ? parseDuration(raw) : undefined
      return ms === undefined ? fail('a duration like 15s, 500ms, 5m or 90d') : ms
    }
    case 'boolean':
      if (typeof raw === 'boolean') return raw
      if (raw === 'true' || raw === '1') return true
      if (raw === 'false' || raw === '0' || raw === '') return false
      return fail('true or false')
    case 'list': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : fail('a list')
      // Each item may itself be comma-separated (`--auto-tls-hosts a,b`), as the env form always is.
      const strings = items.flatMap((item) => typeof item === 'string' ? item.split(',') : fail('a list of strings')).map((item) => item.trim()).filter((item) => item !== '')
      return strings
    }
    case 'address':
      if (typeof raw !== 'string' || splitHostPort(raw) === undefined) return fail('an address like 0.0.0.0:8123')
      return raw
    case 'choice':
      if (typeof raw !== 'string' || !(spec.choices ?? []).includes(raw)) return fail(`one of ${(spec.choices ?? []).join(', ')}`)
      return raw
    case 'count': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,10}$/.test(raw.trim()) ? Number(raw) : NaN
      return Number.isSafeInteger(n) && n >= 1 ? n : fail('a whole number ≥ 1')
    }
  }
}

function parseFile (file: { path: string, text: string }, specs: readonly OptionSpec[]): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = parseYaml(file.text)
  } catch (err) {
    // YAML's message quotes the offending line, which may hold a pasted token.
    throw new CliError('SLK_ERR_CONFIG_FILE', `${file.path}: not valid YAML: ${redactSecrets(err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err))}`)
  }
  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError('SLK_ERR_CONFIG_FILE', `${file.path}: expected a map of settings like "listen: 0.0.0.0:8123"`)
  const known = new Set(specs.map((spec) => spec.name))
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new CliError('SLK_ERR_CONFIG_FILE', `${file.path}: unknown key ${quoteValue(key)}; known keys: ${[...known].join(', ')}`)
  }
  return parsed as Record<string, unknown>
}

/**
 * Resolves a command's settings with precedence flags > env (`SPOKELINK_*`) > config file > defaults.
 * Pure: everything it reads is passed in.
 * @throws CliError SLK_ERR_USAGE_FLAG naming the setting, its source and what was expected; SLK_ERR_CONFIG_FILE
 */
export function resolveConfig (input: ResolveConfigInput): ResolvedConfig {
  const fileValues = input.file === undefined ? {} : parseFile(input.file, input.specs)
  const config: Record<string, ConfigValue> = {}
  const sources: Record<string, ConfigSource> = {}
  for (const spec of input.specs) {
    const candidates: Array<[ConfigSource, unknown]> = [
      ['flag', input.flags[spec.name]],
      ['env', input.env[envNameOf(spec.name)]],
      ['file', fileValues[spec.name]],
    ]
    const found = candidates.find(([, value]) => value !== undefined)
    if (found === undefined) {
      config[spec.name] = spec.default
      sources[spec.name] = 'default'
      continue
    }
    const [source, raw] = found
    config[spec.name] = convert(spec, raw, describe(spec.name, source, input.file?.path))
    sources[spec.name] = source
  }
  return { config: Object.freeze(config), sources: Object.freeze(sources) }
}

/** A token pasted into a non-secret setting (`--label`) is still a token: the log gets its redacted form. */
function redactValue (value: ConfigValue): ConfigValue {
  if (typeof value === 'string') return redactSecrets(value)
  if (Array.isArray(value)) return value.map(redactSecrets)
  return value
}

/** The effective config with each value's source, secrets replaced, for the startup log line. */
export function describeConfig (resolved: ResolvedConfig, specs: readonly OptionSpec[]): Record<string, { value: ConfigValue, source: ConfigSource }> {
  const out: Record<string, { value: ConfigValue, source: ConfigSource }> = {}
  for (const spec of specs) {
    const value = resolved.config[spec.name]
    if (value === undefined) continue
    out[spec.name] = { value: spec.secret === true ? '[redacted]' : redactValue(value), source: resolved.sources[spec.name] ?? 'default' }
  }
  return out
}

/** Reads a string setting. @throws CliError SLK_ERR_USAGE_MISSING when it is required and absent */
export function stringSetting (config: ResolvedConfig['config'], name: string, required: true): string
export function stringSetting (config: ResolvedConfig['config'], name: string, required?: false): string | undefined
export function stringSetting (config: ResolvedConfig['config'], name: string, required = false): string | undefined {
  const value = config[name]
  if (typeof value === 'string') return value
  if (required) throw new CliError('SLK_ERR_USAGE_MISSING', `--${name} is required (or set ${envNameOf(name)})`)
  return undefined
}

/** Reads a number (duration or count) setting that has a default. */
export function numberSetting (config: ResolvedConfig['config'], name: string): number {
  const value = config[name]
  if (typeof value !== 'number') throw new CliError('SLK_ERR_USAGE_MISSING', `--${name} is required (or set ${envNameOf(name)})`)
  return value
}

/** Reads a list setting (empty when absent). */
export function listSetting (config: ResolvedConfig['config'], name: string): string[] {
  const value = config[name]
  return Array.isArray(value) ? value : []
}
