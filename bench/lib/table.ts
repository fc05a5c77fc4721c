import { METRICS } from './results.js'
import type { MetricId, MetricSpec, Results } from './results.js'

/** A system as the table sees it. */
export interface TableSystem {
  name: string
  kind: 'baseline' | 'spokelink' | 'peer'
  /** Set when the system did not run (or failed); it then has no figures and is never the best peer. */
  skipped?: string | undefined
}

/** A target from the issue, attached to one metric of some systems. */
export interface Target {
  metric: MetricId
  applies: (system: TableSystem) => boolean
  /** The verdict text for one system, e.g. `≤ 1 ms ✅`. */
  verdict: (value: number, results: Results) => string
}

const BASELINE = 'raw TCP'

/** A baseline system the table gives a ratio column of its own (Node's plain and TLS relay floors). */
export interface Floor {
  /** Column heading after the `×`. */
  label: string
  /** The system's name in the results. */
  system: string
}

export function formatNumber (value: number, unit: MetricSpec['unit']): string {
  if (!Number.isFinite(value)) return '—'
  if (unit === 's/GiB') return value.toFixed(2)
  if (unit === 'ms') return value < 10 ? value.toFixed(2) : value.toFixed(1)
  return Math.round(value).toLocaleString('en-US')
}

export function formatRatio (ratio: number | undefined): string {
  if (ratio === undefined || !Number.isFinite(ratio)) return '—'
  return `${ratio < 10 ? ratio.toFixed(2) : ratio.toFixed(1)}×`
}

/** The best figure among the peers (not raw TCP, not spokelink) and whose it is. */
export function bestPeer (metric: MetricSpec, systems: readonly TableSystem[], results: Results): { name: string, value: number } | undefined {
  let best: { name: string, value: number } | undefined
  for (const system of systems) {
    if (system.kind !== 'peer' || system.skipped !== undefined) continue
    const value = results.figure(system.name, metric.id)
    if (value === undefined) continue
    const better = best === undefined || (metric.better === 'higher' ? value > best.value : value < best.value)
    if (better) best = { name: system.name, value }
  }
  return best
}

function row (cells: readonly string[]): string {
  return `| ${cells.join(' | ')} |`
}

/**
 * The results as one markdown table: a row per metric and system, the figure, its ratio to raw TCP, to each floor
 * and to the best peer of the same run (system ÷ reference, so below 1× is slower for MB/s and faster for ms), and the targets.
 */
export function renderTable (systems: readonly TableSystem[], results: Results, targets: readonly Target[], floors: readonly Floor[] = []): string {
  const lines = [
    row(['workload', 'system', 'value', '× raw TCP', ...floors.map((f) => `× ${f.label}`), '× best peer', 'target']),
    row(['---', '---', '---:', '---:', ...floors.map(() => '---:'), '---:', '---']),
  ]
  for (const metric of METRICS) {
    const raw = results.figure(BASELINE, metric.id)
    const best = bestPeer(metric, systems, results)
    for (const system of systems) {
      const value = results.figure(system.name, metric.id)
      if (value === undefined) continue
      const label = `${metric.label} (${metric.unit})`
      const verdicts = targets.filter((t) => t.metric === metric.id && t.applies(system)).map((t) => t.verdict(value, results))
      lines.push(row([
        label,
        system.name,
        formatNumber(value, metric.unit),
        formatRatio(raw === undefined ? undefined : value / raw),
        ...floors.map((floor) => {
          const floorValue = results.figure(floor.system, metric.id)
          return formatRatio(floorValue === undefined ? undefined : value / floorValue)
        }),
        formatRatio(best === undefined ? undefined : value / best.value) + (best?.name === system.name ? ' (best)' : ''),
        verdicts.join('; '),
      ]))
    }
  }
  return lines.join('\n')
}
