import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** Where {@link findExecutable} looks for a tool. */
export interface ExecutableSearch {
  /** An environment variable naming the binary; when set, only it counts (a wrong path is not silently bypassed). */
  env?: string
  /** A name to look up on `PATH`. */
  name?: string
  /** Fixed paths tried after `PATH`, e.g. where Debian installs the package. */
  fallbacks?: readonly string[]
}

/** The first executable file of `$env`, else `name` on `PATH`, else `fallbacks`; undefined when none is. */
export function findExecutable (search: ExecutableSearch): string | undefined {
  const fromEnv = search.env === undefined ? undefined : process.env[search.env]
  if (fromEnv !== undefined && fromEnv !== '') return isExecutable(fromEnv) ? fromEnv : undefined
  const { name } = search
  const onPath = name === undefined ? [] : (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '').map((dir) => join(dir, name))
  return [...onPath, ...(search.fallbacks ?? [])].find(isExecutable)
}

function isExecutable (file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}
