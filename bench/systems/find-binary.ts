import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Where `go install` puts binaries when GOBIN is unset. */
function goBinDirs (): string[] {
  const dirs = [join(homedir(), 'go', 'bin'), '/root/go/bin']
  if (process.env.GOPATH !== undefined) dirs.unshift(join(process.env.GOPATH, 'bin'))
  if (process.env.GOBIN !== undefined) dirs.unshift(process.env.GOBIN)
  return [...new Set(dirs)]
}

/** Absolute path of `name` on PATH or in a Go bin directory, or undefined. */
export async function findBinary (name: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('sh', ['-c', 'command -v "$1"', 'sh', name])
    const found = stdout.trim()
    if (found !== '') return found
  } catch {
    // Not on PATH: look where `go install` puts it.
  }
  return goBinDirs().map((dir) => join(dir, name)).find((path) => existsSync(path))
}
