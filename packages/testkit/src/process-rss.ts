import { readFile } from 'node:fs/promises'

/**
 * Resident set size of process `pid` in KiB, from `/proc/<pid>/status` (Linux).
 * @throws Error when the process is gone or the file has no VmRSS line
 */
export async function readRssKiB (pid: number): Promise<number> {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  if (match?.[1] === undefined) throw new Error(`/proc/${pid}/status has no VmRSS line`)
  return Number(match[1])
}
