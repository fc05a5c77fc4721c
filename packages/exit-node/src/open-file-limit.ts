import { readFileSync } from 'node:fs'

/** The process's RLIMIT_NOFILE. */
export interface OpenFileLimit {
  /** What the process may open now; Node raises it to the hard limit at startup. */
  soft: number
  /** The ceiling an unprivileged process may raise the soft limit to. */
  hard: number
}

/** Parses the "Max open files" row of `/proc/<pid>/limits`; `unlimited` reads as Infinity. */
export function parseOpenFileLimit (procLimits: string): OpenFileLimit | undefined {
  const row = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)\s/m.exec(procLimits)
  if (row === null) return undefined
  const read = (text: string | undefined): number => text === 'unlimited' || text === undefined ? Infinity : Number(text)
  return { soft: read(row[1]), hard: read(row[2]) }
}

/**
 * The open-file limit of this process, or undefined where `/proc` does not exist (not Linux). Node has raised
 * the soft limit to the hard one before any of our code runs (checked on Node 20), so this only reads it.
 */
export function readOpenFileLimit (): OpenFileLimit | undefined {
  try {
    return parseOpenFileLimit(readFileSync('/proc/self/limits', 'utf8'))
  } catch {
    // No /proc (macOS, a locked-down sandbox): the caller logs that the limit is unknown.
    return undefined
  }
}
