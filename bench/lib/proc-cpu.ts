import { readdir, readFile } from 'node:fs/promises'

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

/** Parent pid of every live process, from /proc/<pid>/stat field 4. */
async function parentPids (): Promise<Map<number, number>> {
  const parents = new Map<number, number>()
  const entries = await readdir('/proc')
  await Promise.all(entries.filter((name) => /^\d+$/.test(name)).map(async (name) => {
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parents.set(Number(name), ppid)
    } catch {
      // Gone between readdir and read.
    }
  }))
  return parents
}

/**
 * The live processes in the trees rooted at `pids`: a forking server (sshd's per-connection child) does its work
 * in a descendant, so the tree, not the root alone, is what the tunnel costs.
 */
export async function processTree (pids: readonly number[]): Promise<number[]> {
  const parents = await parentPids()
  const inTree = new Set(pids)
  let grew = true
  while (grew) {
    grew = false
    for (const [pid, ppid] of parents) {
      if (!inTree.has(pid) && inTree.has(ppid)) {
        inTree.add(pid)
        grew = true
      }
    }
  }
  return [...inTree]
}

/**
 * CPU seconds of the trees rooted at `pids`, per pid, so a difference between two readings counts only
 * processes present in both (a process that started or ended in between would skew it).
 */
export async function readTreeCpu (pids: readonly number[]): Promise<Map<number, number>> {
  const cpu = new Map<number, number>()
  await Promise.all((await processTree(pids)).map(async (pid) => {
    try {
      cpu.set(pid, await readCpuSeconds(pid))
    } catch {
      // Ended meanwhile.
    }
  }))
  return cpu
}

/** CPU seconds spent between two {@link readTreeCpu} readings by the processes in both. */
export function cpuSpent (before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let spent = 0
  for (const [pid, seconds] of after) {
    const start = before.get(pid)
    if (start !== undefined) spent += seconds - start
  }
  return spent
}
