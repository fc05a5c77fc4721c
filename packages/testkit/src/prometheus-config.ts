/** One scrape job for {@link prometheusConfig}. */
export interface PrometheusJob {
  /** `job_name`. */
  name: string
  /** `static_configs[0].targets`, as `host:port`. */
  targets?: string[]
  /** Labels added to every static target. */
  labels?: Record<string, string>
  /** `http_sd_configs`: URLs answering Prometheus HTTP service discovery (the exit-node's `/v1/sd`). */
  httpSdUrls?: string[]
  /** `refresh_interval` of the HTTP SD configs. @default the scrape interval */
  httpSdRefreshIntervalMs?: number
  /** `metrics_path`. @default "/metrics", or "/federate" with `federate` */
  metricsPath?: string
  /** `params` (URL query parameters), e.g. `{ 'match[]': ['{job!=""}'] }`. */
  params?: Record<string, string[]>
  /** `honor_labels`. @default false, or true with `federate` */
  honorLabels?: boolean
  /** Per-job `scrape_interval` (and `scrape_timeout`). @default the global one */
  scrapeIntervalMs?: number
  /**
   * Make this a federation job: `metrics_path: /federate`, `honor_labels: true` and
   * `params: {'match[]': [...]}` with these selectors (`true` means `['{job!=""}']`). Explicit
   * `metricsPath`, `honorLabels` and `params` still win.
   */
  federate?: boolean | string[]
}

/** Options for {@link prometheusConfig}. */
export interface PrometheusConfigOptions {
  /** `global.external_labels` (the hub in a federation test, or a spoke's cluster name). */
  globalLabels?: Record<string, string>
  /**
   * `global.scrape_interval`, `scrape_timeout` and `evaluation_interval`; tests keep it tiny.
   * @default 250
   */
  scrapeIntervalMs?: number
  /** The scrape jobs. */
  jobs: PrometheusJob[]
  /** `remote_write` targets (a spoke in agent mode writing to the hub's receiver). @default [] */
  remoteWrite?: RemoteWriteTarget[]
}

/** One `remote_write` entry of {@link prometheusConfig}; the queue is tuned for tests (small batches, short waits). */
export interface RemoteWriteTarget {
  /** `http://host:port/api/v1/write`. */
  url: string
  /** `queue_config.batch_send_deadline`: a batch goes out at least this often. @default 1000 */
  batchSendDeadlineMs?: number
  /** `queue_config.min_backoff` and `max_backoff` of the retries after a failed send. @default { min: 100, max: 1000 } */
  backoffMs?: { min: number, max: number }
  /** `queue_config.max_shards`. @default 4 */
  maxShards?: number
}

/** Defaults of the optional {@link PrometheusConfigOptions}. */
export const PROMETHEUS_CONFIG_DEFAULTS = { scrapeIntervalMs: 250, globalLabels: {}, remoteWrite: [] } as const satisfies Required<Omit<PrometheusConfigOptions, 'jobs'>>

/** The `match[]` selector a federation job uses when `federate: true`: every series that has a job. */
export const FEDERATE_ALL_SELECTOR = '{job!=""}'

/** A Prometheus duration: whole seconds as `Ns`, anything else as `Nms`. */
export function formatPrometheusDuration (ms: number): string {
  if (!Number.isInteger(ms) || ms <= 0) throw new RangeError(`formatPrometheusDuration: expected a positive whole number of milliseconds, got ${String(ms)}`)
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}

/** JSON strings are valid YAML scalars, and quoting every one keeps `{job!=""}` and `:` safe. */
const q = (value: string): string => JSON.stringify(value)

function renderMap (map: Record<string, string>, indent: string): string[] {
  return Object.entries(map).map(([key, value]) => `${indent}${q(key)}: ${q(value)}`)
}

/**
 * Renders a `prometheus.yml` for {@link startPrometheus}: a global section with a tiny scrape
 * interval and one `scrape_configs` entry per job (static targets, HTTP SD, federation).
 *
 * @throws RangeError on a non-positive interval or a job with neither targets nor SD URLs.
 */
export function prometheusConfig (options: PrometheusConfigOptions): string {
  const interval = formatPrometheusDuration(options.scrapeIntervalMs ?? PROMETHEUS_CONFIG_DEFAULTS.scrapeIntervalMs)
  const globalLabels = options.globalLabels ?? PROMETHEUS_CONFIG_DEFAULTS.globalLabels
  const out: string[] = [
    'global:',
    `  scrape_interval: ${interval}`,
    // Prometheus rejects a timeout longer than the interval, and its default is 10s.
    `  scrape_timeout: ${interval}`,
    `  evaluation_interval: ${interval}`,
  ]
  if (Object.keys(globalLabels).length > 0) {
    out.push('  external_labels:', ...renderMap(globalLabels, '    '))
  }
  out.push('scrape_configs:')
  if (options.jobs.length === 0) out[out.length - 1] = 'scrape_configs: []'
  for (const job of options.jobs) {
    const targets = job.targets ?? []
    const sdUrls = job.httpSdUrls ?? []
    if (targets.length === 0 && sdUrls.length === 0) {
      throw new RangeError(`prometheusConfig: job ${q(job.name)} needs targets or httpSdUrls`)
    }
    const federate = job.federate === true ? [FEDERATE_ALL_SELECTOR] : job.federate === false ? undefined : job.federate
    const metricsPath = job.metricsPath ?? (federate ? '/federate' : undefined)
    const honorLabels = job.honorLabels ?? (federate ? true : undefined)
    const params = job.params ?? (federate ? { 'match[]': federate } : undefined)
    out.push(`  - job_name: ${q(job.name)}`)
    if (job.scrapeIntervalMs !== undefined) {
      const jobInterval = formatPrometheusDuration(job.scrapeIntervalMs)
      out.push(`    scrape_interval: ${jobInterval}`, `    scrape_timeout: ${jobInterval}`)
    }
    if (metricsPath !== undefined) out.push(`    metrics_path: ${q(metricsPath)}`)
    if (honorLabels !== undefined) out.push(`    honor_labels: ${String(honorLabels)}`)
    if (params !== undefined) {
      out.push('    params:')
      for (const [key, values] of Object.entries(params)) {
        out.push(`      ${q(key)}: [${values.map(q).join(', ')}]`)
      }
    }
    if (targets.length > 0) {
      out.push('    static_configs:', `      - targets: [${targets.map(q).join(', ')}]`)
      if (job.labels !== undefined && Object.keys(job.labels).length > 0) {
        out.push('        labels:', ...renderMap(job.labels, '          '))
      }
    }
    if (sdUrls.length > 0) {
      const refresh = formatPrometheusDuration(job.httpSdRefreshIntervalMs ?? job.scrapeIntervalMs ?? options.scrapeIntervalMs ?? PROMETHEUS_CONFIG_DEFAULTS.scrapeIntervalMs)
      out.push('    http_sd_configs:')
      for (const url of sdUrls) out.push(`      - url: ${q(url)}`, `        refresh_interval: ${refresh}`)
    }
  }
  const remoteWrite = options.remoteWrite ?? []
  if (remoteWrite.length > 0) out.push('remote_write:')
  for (const target of remoteWrite) {
    const backoff = target.backoffMs ?? { min: 100, max: 1000 }
    out.push(
      `  - url: ${q(target.url)}`,
      '    queue_config:',
      `      batch_send_deadline: ${formatPrometheusDuration(target.batchSendDeadlineMs ?? 1000)}`,
      `      min_backoff: ${formatPrometheusDuration(backoff.min)}`,
      `      max_backoff: ${formatPrometheusDuration(backoff.max)}`,
      `      max_shards: ${target.maxShards ?? 4}`
    )
  }
  return out.join('\n') + '\n'
}
