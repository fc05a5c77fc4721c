import { createServer } from 'node:http'
import { listenLoopback } from './listen-loopback.js'

/** Options for {@link startFixtureExporter}. */
export interface FixtureExporterOptions {
  /**
   * Prometheus text served at `/metrics`, or a function called for every scrape.
   * @default a few `fixture_*` gauges and counters, see {@link defaultFixtureMetrics}
   */
  metrics?: string | (() => string)
  /**
   * Paths that serve the metrics (a stand-in for a Prometheus also answers `/federate`).
   * @default ['/metrics']
   */
  paths?: readonly string[]
}

/** A running fixture exporter. */
export interface FixtureExporter {
  /** Port on 127.0.0.1. */
  readonly port: number
  /** Base URL, `http://127.0.0.1:<port>` (the metrics are at `${url}/metrics`). */
  readonly url: string
  /** `http://127.0.0.1:<port>/metrics`. */
  readonly metricsUrl: string
  /** `127.0.0.1:<port>`, the form Prometheus `static_configs.targets` wants. */
  readonly target: string
  /** How many `/metrics` requests it has answered so far. */
  readonly requests: number
  /** Stops listening and drops open connections; idempotent. */
  close: () => Promise<void>
}

/**
 * The metrics a fixture exporter serves by default; `requests` counts this scrape too.
 */
export function defaultFixtureMetrics (requests: number): string {
  return [
    '# HELP fixture_up Always 1 while the fixture exporter runs.',
    '# TYPE fixture_up gauge',
    'fixture_up 1',
    '# HELP fixture_requests_total Scrapes of /metrics served by the fixture exporter.',
    '# TYPE fixture_requests_total counter',
    `fixture_requests_total ${requests}`,
    '# HELP fixture_temperature_celsius A constant gauge with labels.',
    '# TYPE fixture_temperature_celsius gauge',
    'fixture_temperature_celsius{room="lab",sensor="a"} 21.5',
    'fixture_temperature_celsius{room="lab",sensor="b"} 19',
    '',
  ].join('\n')
}

/**
 * Starts an HTTP server on 127.0.0.1 (port 0) that plays a Prometheus exporter: Prometheus text
 * format at `GET /metrics` (or {@link FixtureExporterOptions.paths}), 404 anywhere else. Use it as the spoke's "real" upstream.
 *
 * @throws the listen error if the server cannot bind.
 */
export async function startFixtureExporter (options: FixtureExporterOptions = {}): Promise<FixtureExporter> {
  let requests = 0
  const paths = new Set(options.paths ?? ['/metrics'])
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/'
    if (!paths.has(path) || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('not found\n')
      return
    }
    requests += 1
    const { metrics } = options
    let body: string
    try {
      body = metrics === undefined ? defaultFixtureMetrics(requests) : typeof metrics === 'string' ? metrics : metrics()
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
      res.end(`metrics function threw: ${err instanceof Error ? err.message : String(err)}\n`)
      return
    }
    res.writeHead(200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  const port = await listenLoopback(server)
  let closing: Promise<void> | undefined
  const url = `http://127.0.0.1:${port}`
  return {
    port,
    url,
    metricsUrl: `${url}/metrics`,
    target: `127.0.0.1:${port}`,
    get requests () { return requests },
    close: async () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
      return closing
    },
  }
}
