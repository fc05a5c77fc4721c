import { readFile } from 'node:fs/promises'

/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100

/**
 * User + system CPU seconds `pid` has used so far, from fields 14 and 15 of `/proc/<pid>/stat` (its own threads
 * only, not its children).
 * @throws Error when the process is gone or the line does not parse.
 */
export async function readCpuSeconds (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // After the name, field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`/proc/${pid}/stat: no utime/stime`)
  return (utime + stime) / CLOCK_TICKS_PER_SECOND
}

/** The CPU seconds of every pid together. */
export async function readTotalCpuSeconds (pids: readonly number[]): Promise<number> {
  const each = await Promise.all(pids.map(readCpuSeconds))
  return each.reduce((sum, s) => sum + s, 0)
}
