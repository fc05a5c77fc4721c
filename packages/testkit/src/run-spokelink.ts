import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { runProcess } from './run-process.js'
import type { RunProcessOptions, RunningProcess } from './run-process.js'

/**
 * Absolute path of `packages/cli/bin/spokelink.js`.
 *
 * Found from this file's location, which is `packages/testkit/src/` when testkit runs from source
 * (the vitest alias) and `packages/testkit/dist/` when it runs built; both sit two levels below
 * `packages/`. The bin imports `packages/cli/dist/`, so run `pnpm build` first.
 *
 * @throws Error when the file is not there (testkit was moved out of the workspace).
 */
export function spokelinkBin (): string {
  const bin = fileURLToPath(new URL('../../cli/bin/spokelink.js', import.meta.url))
  if (!existsSync(bin)) {
    throw new Error(`spokelinkBin: ${bin} does not exist; testkit must run from packages/testkit/{src,dist} inside the spokelink workspace`)
  }
  return bin
}

/**
 * Runs the `spokelink` CLI as a child process: `runProcess(process.execPath, [spokelinkBin(), ...args], options)`.
 * The default name is `spokelink <first arg>`.
 *
 * @throws Error when the CLI's bin cannot be found or spawned.
 */
export function runSpokelink (args: readonly string[], options: RunProcessOptions = {}): RunningProcess {
  const name = options.name ?? ['spokelink', ...args.slice(0, 1)].join(' ')
  return runProcess(process.execPath, [spokelinkBin(), ...args], { ...options, name })
}
