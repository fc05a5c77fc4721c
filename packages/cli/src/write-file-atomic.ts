import { randomBytes } from 'node:crypto'
import { rename, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'

/**
 * Replaces a file by writing a sibling and renaming it over, keeping the mode, so a watching
 * exit-node never reads half a file.
 */
export async function writeFileAtomic (file: string, text: string): Promise<void> {
  const mode = await stat(file).then((info) => info.mode & 0o777, () => 0o600)
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
  await writeFile(temporary, text, { mode })
  await rename(temporary, file)
}
