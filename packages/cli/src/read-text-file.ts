import { readFile } from 'node:fs/promises'
import { CliError } from './errors.js'

/**
 * Reads a file named by a flag.
 * @throws CliError SLK_ERR_CONFIG_READ naming the flag and file
 */
export async function readTextFile (flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new CliError('SLK_ERR_CONFIG_READ', `--${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`)
  }
}
