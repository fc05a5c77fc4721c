import { median, percentile } from './stats.js'

/** Whether a bigger or a smaller figure is better. */
export type Better = 'higher' | 'lower'

/** One row group of the table. */
export interface MetricSpec {
  id: MetricId
  label: string
  unit: 'MB/s' | 'ms' | 'KiB' | 's/GiB' | 'µs'
  better: Better
}

export const METRICS = [
  { id: 'bulk1Down', label: '1 stream bulk ↓', unit: 'MB/s', better: 'higher' },
  { id: 'cpu1Down', label: 'CPU of the tunnel processes, 1 stream ↓', unit: 's/GiB', better: 'lower' },
  { id: 'bulk1Up', label: '1 stream bulk ↑', unit: 'MB/s', better: 'higher' },
  { id: 'bulk16Down', label: '16 streams bulk ↓', unit: 'MB/s', better: 'higher' },
  { id: 'get2kP50', label: '2 KB GET p50, new conn', unit: 'ms', better: 'lower' },
  { id: 'get2kP99', label: '2 KB GET p99, new conn', unit: 'ms', better: 'lower' },
  { id: 'cpuGet2k', label: 'CPU of the tunnel processes per 2 KB GET', unit: 'µs', better: 'lower' },
  { id: 'get5m', label: '5 MB GET', unit: 'MB/s', better: 'higher' },
  { id: 'idleRss', label: 'exit-node RSS per idle session', unit: 'KiB', better: 'lower' },
] as const satisfies ReadonlyArray<{ id: string, label: string, unit: string, better: Better }>

export type MetricId = typeof METRICS[number]['id']

/** Raw samples per system and metric, reduced to one figure each at the end. */
export class Results {
  readonly #samples = new Map<string, Map<MetricId, number[]>>()
  readonly #fixed = new Map<string, Map<MetricId, number>>()

  add (system: string, metric: MetricId, ...values: number[]): void {
    let bySystem = this.#samples.get(system)
    if (bySystem === undefined) this.#samples.set(system, bySystem = new Map())
    const list = bySystem.get(metric) ?? []
    list.push(...values)
    bySystem.set(metric, list)
  }

  /** A figure measured once (not per round), such as RSS per idle session. */
  set (system: string, metric: MetricId, value: number): void {
    let bySystem = this.#fixed.get(system)
    if (bySystem === undefined) this.#fixed.set(system, bySystem = new Map())
    bySystem.set(metric, value)
  }

  /** Medians for throughputs; p50/p99 over every pooled latency sample; undefined when never measured. */
  figure (system: string, metric: MetricId): number | undefined {
    const fixed = this.#fixed.get(system)?.get(metric)
    if (fixed !== undefined) return fixed
    const samples = this.#samples.get(system)?.get(metric)
    if (samples === undefined || samples.length === 0) return undefined
    if (metric === 'get2kP50') return percentile(samples, 50)
    if (metric === 'get2kP99') return percentile(samples, 99)
    return median(samples)
  }

  count (system: string, metric: MetricId): number {
    return this.#samples.get(system)?.get(metric)?.length ?? (this.#fixed.get(system)?.has(metric) === true ? 1 : 0)
  }
}
