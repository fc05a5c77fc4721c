import { Writable } from 'node:stream'
import pino from 'pino'
import type { Level, Logger } from 'pino'
import type { LogEntry } from './run-process.js'

/** Pino loggers for in-process exit-nodes and agents that all write into one buffer a test can read. */
export interface LogCapture {
  /** Every line logged since the last {@link LogCapture.clear}, as pino wrote it (JSON and `\n`). */
  readonly lines: readonly string[]
  /** A logger writing into this capture, with `name` in each line; `level` defaults to `debug`. */
  logger: (name: string, level?: Level) => Logger
  /** The lines parsed as JSON objects. */
  entries: () => LogEntry[]
  /** The lines joined: what a failed test prints so it can be read without a rerun. */
  text: () => string
  /** Forgets every line so far (between tests). */
  clear: () => void
}

/** Creates a {@link LogCapture}; its loggers write synchronously, so a line is readable as soon as it was logged. */
export function createLogCapture (): LogCapture {
  let lines: string[] = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'))
      callback()
    },
  })
  return {
    get lines () { return lines },
    logger: (name, level = 'debug') => pino({ level, base: { name } }, sink),
    entries: () => lines.map((line) => JSON.parse(line) as LogEntry),
    text: () => lines.join(''),
    clear: () => { lines = [] },
  }
}
