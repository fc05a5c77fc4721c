import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { basename } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import type { Readable, Writable } from 'node:stream'

/** Options for {@link runProcess}. */
export interface RunProcessOptions {
  /** Variables merged over the test process's environment; an `undefined` value removes one. */
  env?: Record<string, string | undefined>
  /** Working directory of the child. @default the test process's cwd */
  cwd?: string
  /** Name used in error messages. @default the command's base name */
  name?: string
  /**
   * Lines kept per stream (stdout, stderr) and parsed JSON log entries kept; older ones are dropped.
   * @default 5_000
   */
  maxLines?: number
  /**
   * Bytes of combined output kept for {@link RunningProcess.output}; the oldest are dropped beyond it.
   * @default 64 MiB
   */
  maxOutputBytes?: number
  /**
   * How long {@link RunningProcess.kill} waits after its signal before sending SIGKILL.
   * @default 5_000
   */
  killTimeoutMs?: number
}

/** Defaults of the optional {@link RunProcessOptions}. */
export const RUN_PROCESS_DEFAULTS = {
  maxLines: 5_000,
  maxOutputBytes: 64 * 1024 * 1024,
  killTimeoutMs: 5_000,
} as const satisfies Required<Omit<RunProcessOptions, 'env' | 'cwd' | 'name'>>

/** How a child process ended; exactly one of `code` and `signal` is non-null. */
export interface ProcessExit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** Options of the `waitFor*` methods of {@link RunningProcess}. */
export interface ProcessWaitOptions {
  /** A deadline that only catches a hang (see waitFor's). @default 30_000 */
  timeoutMs?: number
  /** Named in the timeout error. @default a description of the predicate or pattern */
  what?: string
  /** Aborting rejects at once with the signal's reason. */
  signal?: AbortSignal
}

/** A parsed JSON log line (pino writes one object per line). */
export type LogEntry = Record<string, unknown>

/** A child process started by {@link runProcess}, with its output collected. */
export interface RunningProcess {
  /** Name used in error messages. */
  readonly name: string
  /** OS process id. */
  readonly pid: number
  /** The underlying child, for the rare test that needs it. */
  readonly child: ChildProcess
  /** The child's stdin (a pipe, left open). */
  readonly stdin: Writable
  /** The last {@link RunProcessOptions.maxLines} stdout lines, without line terminators. */
  readonly stdoutLines: readonly string[]
  /** The last {@link RunProcessOptions.maxLines} stderr lines, without line terminators. */
  readonly stderrLines: readonly string[]
  /** Every stdout or stderr line that parsed as a JSON object (pino logs), oldest first, bounded like the lines. */
  readonly logs: readonly LogEntry[]
  /** How the process ended, once its stdio has closed; `undefined` while it runs. */
  readonly exit: ProcessExit | undefined
  /**
   * Resolves with the first log entry (already seen or still to come) for which `predicate` is true.
   * @throws Error `timed out after <ms>ms waiting for <what>` with the output's tail, or when the process
   *   exits first.
   */
  waitForLog: (predicate: (entry: LogEntry) => boolean, options?: ProcessWaitOptions) => Promise<LogEntry>
  /**
   * Resolves with the match of the first stdout or stderr line (already seen or still to come) that
   * `pattern` matches; `match.input` is the whole line.
   * @throws Error on timeout or when the process exits first, like {@link RunningProcess.waitForLog}.
   */
  waitForLine: (pattern: RegExp, options?: ProcessWaitOptions) => Promise<RegExpExecArray>
  /**
   * Resolves when the process has exited and its output has been read; does not kill it.
   * @throws Error `timed out after <ms>ms waiting for <name> to exit` (default 30 s).
   */
  waitForExit: (options?: { timeoutMs?: number, signal?: AbortSignal }) => Promise<ProcessExit>
  /**
   * Sends `signal`, then SIGKILL if the process is still alive after `timeoutMs`
   * (default {@link RunProcessOptions.killTimeoutMs}); resolves with the exit. Idempotent: later calls
   * return the same exit, and a different signal is forwarded while the process is still alive.
   */
  kill: (signal?: NodeJS.Signals, options?: { timeoutMs?: number }) => Promise<ProcessExit>
  /** All collected stdout and stderr text in arrival order (bounded by `maxOutputBytes`), for grepping secrets. */
  output: () => string
  /** The last `lines` lines of output, for error messages. */
  tail: (lines?: number) => string
}

const DEFAULT_WAIT_MS = 30_000
const DEFAULT_EXIT_WAIT_MS = 30_000
/** A partial line is cut into a line of its own past this many characters, so a newline-less flood stays bounded. */
const MAX_PARTIAL_LINE_CHARS = 1024 * 1024

const tracked = new Set<RunningProcess>()
let exitHookInstalled = false

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // 'exit' handlers must be synchronous: SIGKILL is the only thing that surely lands before we are gone.
  process.on('exit', () => {
    for (const p of tracked) {
      try {
        p.child.kill('SIGKILL')
      } catch {
        // Already gone; nothing else to do while the test process exits.
      }
    }
  })
}

/**
 * Kills every process started by {@link runProcess} that is still running (SIGTERM, then SIGKILL)
 * and resolves when all have exited. Call it in `afterEach`/`afterAll`; the test process also SIGKILLs
 * any survivor when it exits.
 */
export async function killAllProcesses (): Promise<void> {
  await Promise.all([...tracked].map(async (p) => p.kill()))
}

/** A bounded list that remembers how many items it has ever held, so scans can resume by sequence number. */
class Ring<T> {
  readonly items: T[] = []
  total = 0
  constructor (private readonly max: number) {}
  push (item: T): void {
    this.items.push(item)
    this.total += 1
    if (this.items.length > this.max) this.items.shift()
  }

  /** Items with sequence number ≥ `seq` that are still held. */
  * since (seq: number): Generator<T> {
    const first = this.total - this.items.length
    for (let i = Math.max(0, seq - first); i < this.items.length; i++) {
      const item = this.items[i]
      if (item !== undefined) yield item
    }
  }
}

interface Waiter {
  /** Looks at what arrived since its last call; true once it has settled its promise. */
  test: () => boolean
  /** The process has exited without `test` succeeding. */
  fail: (exit: ProcessExit) => void
}

/**
 * Spawns `command` with `args` as a real child process with piped stdio, collects its output and
 * parses its JSON log lines. The process is tracked until it exits: see {@link killAllProcesses}.
 *
 * @throws Error when the process cannot be spawned at all (for example a missing executable).
 */
export function runProcess (command: string, args: readonly string[], options: RunProcessOptions = {}): RunningProcess {
  const maxLines = options.maxLines ?? RUN_PROCESS_DEFAULTS.maxLines
  const maxOutputBytes = options.maxOutputBytes ?? RUN_PROCESS_DEFAULTS.maxOutputBytes
  const killTimeoutMs = options.killTimeoutMs ?? RUN_PROCESS_DEFAULTS.killTimeoutMs
  const name = options.name ?? basename(command)
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries({ ...process.env, ...options.env })) {
    if (value !== undefined) env[key] = value
  }

  const child = spawn(command, [...args], { cwd: options.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let spawnError: Error | undefined
  child.on('error', (err) => { spawnError ??= err })
  const { pid, stdin, stdout, stderr } = child
  if (pid === undefined || stdin === null || stdout === null || stderr === null) {
    throw new Error(`runProcess: could not spawn ${name} (${command})`)
  }
  // A child that exits without reading stdin makes writes fail with EPIPE; that is not the test's error.
  stdin.on('error', () => {})

  /** Every line of both streams, in arrival order; `stdoutLines`/`stderrLines` are views kept alongside. */
  const lines = new Ring<string>(2 * maxLines)
  const stdoutLines = new Ring<string>(maxLines)
  const stderrLines = new Ring<string>(maxLines)
  const logs = new Ring<LogEntry>(maxLines)
  const outputChunks: string[] = []
  let outputBytes = 0
  let exit: ProcessExit | undefined
  const waiters = new Set<Waiter>()
  const exitListeners = new Set<(exit: ProcessExit) => void>()

  const recordOutput = (text: string): void => {
    if (text === '') return
    outputChunks.push(text)
    outputBytes += text.length
    while (outputBytes > maxOutputBytes && outputChunks.length > 1) {
      outputBytes -= outputChunks.shift()?.length ?? 0
    }
  }

  const onLine = (streamLines: Ring<string>, line: string): void => {
    streamLines.push(line)
    lines.push(line)
    if (line.startsWith('{')) {
      try {
        const parsed: unknown = JSON.parse(line)
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
          logs.push(parsed as LogEntry)
        }
      } catch {
        // Not JSON after all: it stays a plain line.
      }
    }
    for (const waiter of waiters) waiter.test()
  }

  const collect = (stream: Readable, streamLines: Ring<string>): void => {
    const decoder = new StringDecoder('utf8')
    let partial = ''
    const consume = (text: string, final: boolean): void => {
      recordOutput(text)
      partial += text
      let start = 0
      for (let nl = partial.indexOf('\n'); nl !== -1; nl = partial.indexOf('\n', start)) {
        const end = nl > start && partial.charCodeAt(nl - 1) === 13 ? nl - 1 : nl
        onLine(streamLines, partial.slice(start, end))
        start = nl + 1
      }
      partial = partial.slice(start)
      if ((final && partial !== '') || partial.length > MAX_PARTIAL_LINE_CHARS) {
        const rest = partial
        partial = ''
        onLine(streamLines, rest)
      }
    }
    stream.on('data', (chunk: Buffer) => { consume(decoder.write(chunk), false) })
    stream.on('end', () => { consume(decoder.end(), true) })
  }
  collect(stdout, stdoutLines)
  collect(stderr, stderrLines)

  const output = (): string => outputChunks.join('')
  const tail = (count = 40): string => {
    const all = output().split('\n')
    if (all.at(-1) === '') all.pop()
    return all.slice(-count).join('\n')
  }
  const describeExit = (e: ProcessExit): string =>
    (e.signal === null ? `code ${String(e.code)}` : `signal ${e.signal}`) + (spawnError ? ` (${spawnError.message})` : '')
  const withTail = (message: string): string => {
    const text = tail()
    return text === '' ? `${message} (${name} printed nothing)` : `${message}\n--- last output of ${name} (pid ${pid}) ---\n${text}`
  }

  // 'close' (not 'exit') so every line the child wrote has been read when waiters learn it is gone.
  child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
    const ended: ProcessExit = { code, signal }
    exit = ended
    tracked.delete(handle)
    for (const waiter of [...waiters]) waiter.fail(ended)
    for (const listener of [...exitListeners]) listener(ended)
  })

  /** Resolves with the first non-undefined `find(fromSeq)` result, checked now and after every new line. */
  const waitForMatch = async <T>(scan: () => T | undefined, what: string, opts: ProcessWaitOptions): Promise<T> => {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS
    opts.signal?.throwIfAborted()
    const found = scan()
    if (found !== undefined) return found
    if (exit !== undefined) throw new Error(withTail(`${name} exited with ${describeExit(exit)} before ${what}`))
    return new Promise<T>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer)
        waiters.delete(waiter)
        opts.signal?.removeEventListener('abort', onAbort)
      }
      const waiter: Waiter = {
        test: () => {
          const value = scan()
          if (value === undefined) return false
          finish()
          resolve(value)
          return true
        },
        fail: (ended) => {
          finish()
          reject(new Error(withTail(`${name} exited with ${describeExit(ended)} before ${what}`)))
        },
      }
      const onAbort = (): void => {
        finish()
        reject(opts.signal?.reason)
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(withTail(`timed out after ${timeoutMs}ms waiting for ${what}`)))
      }, timeoutMs)
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      waiters.add(waiter)
    })
  }

  const waitForLog = async (predicate: (entry: LogEntry) => boolean, opts: ProcessWaitOptions = {}): Promise<LogEntry> => {
    // Each entry is offered to the predicate once: a scan resumes where the previous one stopped.
    let next = 0
    return waitForMatch(() => {
      for (const entry of logs.since(next)) {
        if (predicate(entry)) return entry
      }
      next = logs.total
      return undefined
    }, opts.what ?? `a log entry matching ${predicate.toString()}`, opts)
  }

  const waitForLine = async (pattern: RegExp, opts: ProcessWaitOptions = {}): Promise<RegExpExecArray> => {
    // A copy without g/y, so the caller's lastIndex neither affects nor is affected by the search.
    const regex = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ''))
    let next = 0
    return waitForMatch(() => {
      for (const line of lines.since(next)) {
        const match = regex.exec(line)
        if (match !== null) return match
      }
      next = lines.total
      return undefined
    }, opts.what ?? `a line matching ${String(pattern)}`, opts)
  }

  const waitForExit = async (opts: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<ProcessExit> => {
    if (exit !== undefined) return exit
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXIT_WAIT_MS
    opts.signal?.throwIfAborted()
    return new Promise<ProcessExit>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer)
        exitListeners.delete(listener)
        opts.signal?.removeEventListener('abort', onAbort)
      }
      const listener = (e: ProcessExit): void => { finish(); resolve(e) }
      const onAbort = (): void => { finish(); reject(opts.signal?.reason) }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(withTail(`timed out after ${timeoutMs}ms waiting for ${name} to exit`)))
      }, timeoutMs)
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      exitListeners.add(listener)
    })
  }

  let killing: Promise<ProcessExit> | undefined
  const kill = async (signal: NodeJS.Signals = 'SIGTERM', opts: { timeoutMs?: number } = {}): Promise<ProcessExit> => {
    if (exit !== undefined) return exit
    if (killing !== undefined) {
      if (signal !== 'SIGTERM') child.kill(signal)
      return killing
    }
    const timeoutMs = opts.timeoutMs ?? killTimeoutMs
    killing = new Promise<ProcessExit>((resolve) => {
      let stubborn: NodeJS.Timeout | undefined
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        // Dead but not closed after SIGKILL: a grandchild holds the pipes, so stop reading them.
        stubborn = setTimeout(() => { stdout.destroy(); stderr.destroy() }, timeoutMs)
      }, timeoutMs)
      exitListeners.add((e) => {
        clearTimeout(timer)
        clearTimeout(stubborn)
        resolve(e)
      })
    })
    child.kill(signal)
    return killing
  }

  const handle: RunningProcess = {
    name,
    pid,
    child,
    stdin,
    get stdoutLines () { return stdoutLines.items },
    get stderrLines () { return stderrLines.items },
    get logs () { return logs.items },
    get exit () { return exit },
    waitForLog,
    waitForLine,
    waitForExit,
    kill,
    output,
    tail,
  }
  tracked.add(handle)
  installExitHook()
  return handle
}
