import { Command, CommanderError } from 'commander'
import { redactSecrets } from '@spokelink/auth'
import type { CommandContext } from './command-context.js'
import { agentCommand } from './commands/agent.js'
import { demoCommand } from './commands/demo.js'
import { serverCommand } from './commands/server.js'
import { statusCommand } from './commands/status.js'
import { tokenCommand } from './commands/token.js'
import { exitCodeOf } from './errors.js'
import { printError, printNotice } from './output.js'

/** Version printed by `spokelink --version`. */
export const CLI_VERSION = '0.1.0'

/** Builds the `spokelink` command tree; commander's own errors are thrown, not printed, so {@link runCli} prints one line. */
export function createProgram (context: CommandContext): Command {
  const program = new Command('spokelink')
    .description('secure tunnel from spoke clusters to a hub Prometheus: agent (spoke) and exit-node (hub)')
    .version(CLI_VERSION)
    .showSuggestionAfterError(true)
  program.addCommand(serverCommand(context))
  program.addCommand(agentCommand(context))
  program.addCommand(tokenCommand(context))
  program.addCommand(statusCommand(context))
  program.addCommand(demoCommand(context))
  const quiet = (command: Command): void => {
    command.exitOverride()
    command.configureOutput({ writeErr: () => {} })
    command.commands.forEach(quiet)
  }
  quiet(program)
  return program
}

/**
 * Runs the CLI and returns the process exit status: 0 ok, 2 usage or configuration error, 1 anything else.
 * Errors print as one `error: …` line; a stack only at SPOKELINK_LOG_LEVEL=debug.
 */
export async function runCli (argv: string[], context: CommandContext): Promise<number> {
  try {
    await createProgram(context).parseAsync(argv)
    return 0
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0
      // Commander quotes the offending argument, which may be a token pasted in the wrong place.
      printError(redactSecrets(err.message.replace(/^error: /, '')))
      return 2
    }
    // Messages are written not to quote secrets; this is the backstop for one that does.
    const message = redactSecrets(err instanceof Error ? err.message : String(err))
    printError(message)
    const debug = context.env.SPOKELINK_LOG_LEVEL === 'debug' || context.env.SPOKELINK_LOG_LEVEL === 'trace'
    if (debug && err instanceof Error && err.stack !== undefined) printNotice(redactSecrets(err.stack))
    return exitCodeOf(err)
  }
}
