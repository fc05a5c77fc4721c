import { readFile } from 'node:fs/promises'
import { Option } from 'commander'
import type { Command } from 'commander'
import { envNameOf, resolveConfig } from './config.js'
import type { OptionSpec, ResolvedConfig } from './config.js'
import { CliError } from './errors.js'

const collect = (value: string, previous: string[] | undefined): string[] => [...previous ?? [], value]

const camel = (name: string): string => name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())

/** Adds each spec as a commander option; help text names its env var. Defaults are applied later, by resolveConfig. */
export function addOptions (command: Command, specs: readonly OptionSpec[]): Command {
  for (const spec of specs) {
    const flags = spec.kind === 'boolean' ? `--${spec.name}` : `--${spec.name} <${spec.arg ?? 'value'}>`
    const defaultText = spec.default === undefined || spec.secret === true ? '' : ` (default: ${spec.kind === 'duration' ? `${String(spec.default)}ms` : String(spec.default)})`
    const option = new Option(flags, `${spec.help}${defaultText} [${envNameOf(spec.name)}]`)
    if (spec.kind === 'list') option.argParser(collect)
    command.addOption(option)
  }
  command.addOption(new Option('--config <file>', `YAML file of settings, keys are flag names [${envNameOf('config')}]`))
  return command
}

/**
 * Adds `--check-config`: validate every flag, env var and file exactly as a start would, print the effective
 * settings (secrets redacted) and exit 0, or exit 2 with one line; nothing is bound, dialed or written. It is an
 * action, not a setting, so it has no env var and no config-file key.
 */
export function addCheckConfigOption (command: Command): Command {
  return command.addOption(new Option('--check-config', 'validate the settings and the files they name as a start would, print the effective settings (secrets redacted) and exit; binds, dials and writes nothing'))
}

/** Resolves a command's settings from its parsed flags, the environment and `--config`. */
export async function resolveCommandConfig (command: Command, specs: readonly OptionSpec[], env: Readonly<Record<string, string | undefined>>): Promise<ResolvedConfig> {
  const values = command.opts<Record<string, unknown>>()
  const flags: Record<string, unknown> = {}
  for (const spec of specs) {
    if (command.getOptionValueSource(camel(spec.name)) === 'cli') flags[spec.name] = values[camel(spec.name)]
  }
  const configPath = typeof values.config === 'string' ? values.config : env[envNameOf('config')]
  let file
  if (configPath !== undefined && configPath !== '') {
    try {
      file = { path: configPath, text: await readFile(configPath, 'utf8') }
    } catch (err) {
      throw new CliError('SLK_ERR_CONFIG_READ', `--config: cannot read ${configPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
  }
  return resolveConfig({ specs, flags, env, file })
}
