import { get } from 'node:http'
import { LogHistogram } from './log-histogram.js'

/** One spoke as the scraper sees it: its data-plane port on the exit-node and its upstream reached directly. */
export interface ScrapeTarget {
  name: string
  tunnelPort: number
  directPort: number
}

/** What one path (through the tunnel, or direct) measured while recording. */
export interface ScrapePathStats {
  durations: LogHistogram
  failures: number
  /** Response bytes received while recording (whichever scrape they belong to), for CPU per scraped GiB. */
  bytes: number
  /** The first failure's message, so a broken run says why. */
  firstFailure?: string
  /** Failures by kind (the message without its port), so a run tells a hang-up from a timeout. */
  failureKinds: Map<string, number>
}

/** Prometheus's own default: a scrape that takes longer than this fails. */
const SCRAPE_TIMEOUT_MS = 10_000
const FEDERATE_PATH = '/federate?match%5B%5D=%7Bjob%3D~%22.%2B%22%7D'

/**
 * Where in the interval a target is scraped, from a hash of its name, as Prometheus spreads its targets
 * (`offset = hash(labels) mod interval`): stable per target, spread evenly over the fleet.
 */
export function scrapeOffsetMs (name: string, intervalMs: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193) >>> 0
  return (hash / 2 ** 32) * intervalMs
}

/** One `GET /federate` on a new connection; resolves with the milliseconds to the last byte. */
async function scrapeOnce (port: number, expectedBytes: number, onBytes: (n: number) => void): Promise<number> {
  const started = performance.now()
  return new Promise<number>((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: FEDERATE_PATH, agent: false, timeout: SCRAPE_TIMEOUT_MS }, (res) => {
      let received = 0
      res.on('data', (chunk: Buffer) => {
        received += chunk.length
        onBytes(chunk.length)
      })
      res.on('end', () => {
        if (res.statusCode !== 200 || received !== expectedBytes) reject(new Error(`port ${port}: status ${String(res.statusCode)}, ${received} of ${expectedBytes} bytes`))
        else resolve(performance.now() - started)
      })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`port ${port}: no answer within ${SCRAPE_TIMEOUT_MS} ms`)) })
    req.on('error', reject)
  })
}

/**
 * Scrapes every target every `intervalMs` through the tunnel at its Prometheus-like offset, and the same
 * upstream directly half an interval later. Durations go into fixed-size histograms and only while
 * {@link FleetScraper.recording} is set, so memory does not grow with the run.
 */
export class FleetScraper {
  readonly tunnel: ScrapePathStats = { durations: new LogHistogram(), failures: 0, bytes: 0, failureKinds: new Map() }
  readonly direct: ScrapePathStats = { durations: new LogHistogram(), failures: 0, bytes: 0, failureKinds: new Map() }
  recording = false
  readonly #timers: NodeJS.Timeout[] = []
  readonly #inFlight = new Set<Promise<void>>()
  readonly #responseBytes: number

  constructor (targets: readonly ScrapeTarget[], intervalMs: number, responseBytes: number) {
    this.#responseBytes = responseBytes
    for (const target of targets) {
      const offset = scrapeOffsetMs(target.name, intervalMs)
      this.#every(offset, intervalMs, target.tunnelPort, this.tunnel)
      this.#every((offset + intervalMs / 2) % intervalMs, intervalMs, target.directPort, this.direct)
    }
  }

  #every (offsetMs: number, intervalMs: number, port: number, stats: ScrapePathStats): void {
    const first = setTimeout(() => {
      this.#scrape(port, stats)
      this.#timers.push(setInterval(() => { this.#scrape(port, stats) }, intervalMs))
    }, offsetMs)
    this.#timers.push(first)
  }

  #scrape (port: number, stats: ScrapePathStats): void {
    const recording = this.recording
    const onBytes = (n: number): void => { if (this.recording) stats.bytes += n }
    const done = scrapeOnce(port, this.#responseBytes, onBytes).then((ms) => {
      if (recording) stats.durations.add(ms)
    }, (err: unknown) => {
      if (!recording) return
      stats.failures++
      const message = err instanceof Error ? err.message : String(err)
      stats.firstFailure ??= message
      const kind = message.replace(/^port \d+: /, '').replace(/\d+ of/, 'n of').replace(/(\d+\.){3}\d+:\d+/g, 'ADDRESS:PORT')
      stats.failureKinds.set(kind, (stats.failureKinds.get(kind) ?? 0) + 1)
    }).finally(() => { this.#inFlight.delete(done) })
    this.#inFlight.add(done)
  }

  /** Stops scheduling and waits for the scrapes in flight. */
  async stop (): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer)
    await Promise.all([...this.#inFlight])
  }
}
