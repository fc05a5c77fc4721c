/**
 * @packageDocumentation
 * The `spokelink` command: commander wiring, config precedence (flags > env > file > defaults), pino, signals.
 *
 * @example
 * ```ts
 * const code = await runCli(['node', 'spokelink', 'token', 'list', '--spokes', 'spokes.yaml'], { env: process.env, shutdown: new AbortController().signal })
 * ```
 */
export { runCli, createProgram, CLI_VERSION } from './program.js'
export { resolveConfig, describeConfig, envNameOf, splitHostPort } from './config.js'
export type { OptionSpec, OptionKind, ConfigValue, ConfigSource, ResolveConfigInput, ResolvedConfig } from './config.js'
export { parseDuration } from './duration.js'
export { CliError, CLI_ERROR_CODES, exitCodeOf } from './errors.js'
export type { CliErrorCode } from './errors.js'
export type { CommandContext } from './command-context.js'
export { SERVER_OPTIONS } from './commands/server.js'
export { AGENT_OPTIONS } from './commands/agent.js'
export { createKubeEndpointSliceApi, loadKubeConfig } from './kube-endpoint-slice-api.js'
