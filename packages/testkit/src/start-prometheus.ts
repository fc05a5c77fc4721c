import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findExecutable } from './find-executable.js'
import { freePort } from './free-port.js'
import { runProcess } from './run-process.js'
import type { RunningProcess } from './run-process.js'
import { waitFor } from './wait-for.js'

/** Options for {@link startPrometheus}. */
export interface StartPrometheusOptions {
  /** The `prometheus.yml` text, e.g. from `prometheusConfig()`. */
  config: string
  /** Name used in logs and errors (`hub`, `spoke-a`). @default "prometheus" */
  name?: string
  /** More command-line flags, appended after testkit's own. */
  extraArgs?: string[]
  /**
   * How long to wait for `/-/ready`.
   * @default 60_000
   */
  readyTimeoutMs?: number
  /** Run in agent mode (`--enable-feature=agent`, a WAL under `--storage.agent.path`): scrape and remote-write only, no query API. @default false */
  agent?: boolean
  /** Listen on this port instead of a free one (restarting a Prometheus where its clients expect it); no retry on a lost race. */
  port?: number
  /** Keep `prometheus.yml` and the TSDB here instead of a temporary directory; `close()` then leaves it (a restart reuses it). */
  dataDir?: string
}

/** One element of an instant-query vector. */
export interface PrometheusSample {
  metric: Record<string, string>
  /** `[unix seconds, value as a string]`, as the HTTP API returns it. */
  value: [number, string]
}

/** The parts of `/api/v1/targets` tests look at (more fields are present). */
export interface PrometheusTargets {
  activeTargets: Array<{
    labels: Record<string, string>
    discoveredLabels: Record<string, string>
    scrapePool: string
    scrapeUrl: string
    health: 'up' | 'down' | 'unknown'
    lastError: string
    [field: string]: unknown
  }>
  droppedTargets: unknown[]
}

/** A running Prometheus started by {@link startPrometheus}. */
export interface RunningPrometheus {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  readonly port: number
  /** `127.0.0.1:<port>`, for another Prometheus's `targets`. */
  readonly target: string
  /** Temporary directory holding `prometheus.yml` and the TSDB (`data/`); removed by `close()`. */
  readonly dataDir: string
  readonly process: RunningProcess
  /**
   * Runs an instant query and resolves with its vector.
   * @throws Error naming the expression when the API answers an error or a non-vector result.
   */
  query: (expr: string) => Promise<PrometheusSample[]>
  /** `GET /api/v1/targets` → its `data`. */
  targets: () => Promise<PrometheusTargets>
  /**
   * Writes a new config (or rereads the current one) and applies it with `POST /-/reload`.
   * @throws Error when Prometheus rejects the config.
   */
  reload: (config?: string) => Promise<void>
  /** Stops Prometheus (SIGTERM, then SIGKILL) and removes `dataDir`; idempotent. */
  close: () => Promise<void>
}

const PROMETHEUS_DEFAULTS = { name: 'prometheus', readyTimeoutMs: 60_000 } as const
const START_ATTEMPTS = 3
const HTTP_TIMEOUT_MS = 10_000

/**
 * Path of the Prometheus binary: `$PROMETHEUS_BIN` if set, else `prometheus` on `PATH`, else
 * `/usr/bin/prometheus` (Debian's package); `undefined` when none is executable.
 */
export function findPrometheusBin (): string | undefined {
  return findExecutable({ env: 'PROMETHEUS_BIN', name: 'prometheus', fallbacks: ['/usr/bin/prometheus'] })
}

function missingMessage (): string {
  const fromEnv = process.env.PROMETHEUS_BIN
  const where = fromEnv !== undefined && fromEnv !== '' ? `PROMETHEUS_BIN=${fromEnv} is not executable` : 'no prometheus on PATH or at /usr/bin/prometheus'
  return `Prometheus is not installed (${where}); install Debian's package with ` +
    '`apt-get install -y --no-install-recommends prometheus` (.ci/run does) or set PROMETHEUS_BIN'
}

/**
 * Whether a Prometheus binary is available, for `describe.skipIf(!isPrometheusInstalled())`.
 *
 * @throws Error when it is missing and `CI` is set: in CI those tests must run, never skip.
 */
export function isPrometheusInstalled (): boolean {
  if (findPrometheusBin() !== undefined) return true
  const ci = process.env.CI
  if (ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0') {
    throw new Error(`${missingMessage()}. CI is set, so tests that need Prometheus must not be skipped.`)
  }
  return false
}

/**
 * Launches a real Prometheus (Debian's 2.x) on 127.0.0.1 with `config`, a temporary TSDB and the
 * lifecycle API, and resolves once `/-/ready` answers 200. Logs are JSON, so
 * `process.waitForLog()` works on them.
 *
 * Prometheus 2.x hands discovered targets (static ones too) to the scrape manager at most every
 * 5 s, so the first scrape comes about 5 s after start (or after `reload()`/a new SD target), however
 * small the scrape interval: wait for data with `waitFor(..., { timeoutMs: 30_000 })` or more.
 *
 * The port comes from `freePort()` (Prometheus cannot report a port 0 binding); if another
 * process takes it first, the launch is retried on a new port.
 *
 * @throws Error when Prometheus is missing, rejects the config, or is not ready in time.
 */
export async function startPrometheus (options: StartPrometheusOptions): Promise<RunningPrometheus> {
  const bin = findPrometheusBin()
  if (bin === undefined) throw new Error(missingMessage())
  const name = options.name ?? PROMETHEUS_DEFAULTS.name
  const readyTimeoutMs = options.readyTimeoutMs ?? PROMETHEUS_DEFAULTS.readyTimeoutMs
  const ownDataDir = options.dataDir === undefined
  const dataDir = options.dataDir ?? await mkdtemp(join(tmpdir(), `spokelink-${name.replace(/[^\w-]/g, '_')}-`))
  const configFile = join(dataDir, 'prometheus.yml')
  await writeFile(configFile, options.config)

  let started: { proc: RunningProcess, port: number } | undefined
  try {
    for (let attempt = 1; started === undefined; attempt++) {
      const port = options.port ?? await freePort()
      const proc = runProcess(bin, [
        `--config.file=${configFile}`,
        // Agent mode refuses the server's storage flags, and the reverse.
        ...(options.agent === true ? ['--enable-feature=agent', `--storage.agent.path=${join(dataDir, 'wal')}`] : [`--storage.tsdb.path=${join(dataDir, 'data')}`]),
        `--web.listen-address=127.0.0.1:${port}`,
        '--web.enable-lifecycle',
        '--log.format=json',
        ...(options.extraArgs ?? []),
      ], { name, cwd: dataDir })
      try {
        await waitUntilReady(proc, `http://127.0.0.1:${port}`, name, readyTimeoutMs)
        started = { proc, port }
      } catch (err) {
        await proc.kill('SIGKILL')
        const lostPortRace = /address already in use/i.test(proc.output())
        if (!lostPortRace || attempt >= START_ATTEMPTS || options.port !== undefined) throw err
      }
    }
  } catch (err) {
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true })
    throw err
  }

  const { proc, port } = started
  const url = `http://127.0.0.1:${port}`
  let closing: Promise<void> | undefined
  return {
    url,
    port,
    target: `127.0.0.1:${port}`,
    dataDir,
    process: proc,
    query: async (expr) => {
      const data = await getApi(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`, `query ${expr}`)
      if (!isRecord(data) || data.resultType !== 'vector' || !Array.isArray(data.result)) {
        throw new Error(`${name}: query ${expr} did not return a vector: ${JSON.stringify(data)}`)
      }
      return data.result as PrometheusSample[]
    },
    targets: async () => await getApi(`${url}/api/v1/targets`, 'targets') as PrometheusTargets,
    reload: async (config) => {
      if (config !== undefined) await writeFile(configFile, config)
      const res = await fetch(`${url}/-/reload`, { method: 'POST', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
      const body = await res.text()
      if (!res.ok) throw new Error(`${name}: reload failed with HTTP ${res.status}: ${body.trim()}`)
    },
    close: async () => {
      closing ??= (async () => {
        await proc.kill()
        if (ownDataDir) await rm(dataDir, { recursive: true, force: true })
      })()
      await closing
    },
  }
}

async function waitUntilReady (proc: RunningProcess, url: string, name: string, timeoutMs: number): Promise<void> {
  const exited = new AbortController()
  const onClose = (): void => {
    exited.abort(new Error(`${name} exited before it was ready at ${url}/-/ready\n--- last output of ${name} ---\n${proc.tail()}`))
  }
  if (proc.exit !== undefined) onClose()
  else proc.child.once('close', onClose)
  try {
    await waitFor(async () => {
      const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
      await res.text()
      return res.ok
    }, { what: `${name} to be ready at ${url}/-/ready`, timeoutMs, intervalMs: 50, signal: exited.signal })
  } finally {
    proc.child.off('close', onClose)
  }
}

async function getApi (url: string, what: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new Error(`Prometheus ${what}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`)
  }
  if (!isRecord(body) || body.status !== 'success') {
    const error = isRecord(body) ? String(body.error) : text.slice(0, 200)
    throw new Error(`Prometheus ${what}: HTTP ${res.status}: ${error}`)
  }
  return body.data
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}
