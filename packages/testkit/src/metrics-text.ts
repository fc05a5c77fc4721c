/** One sample of a Prometheus text exposition. */
export interface MetricSample {
  name: string
  labels: Record<string, string>
  value: number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** Parses the samples of a Prometheus text exposition (`/metrics`); comments and blank lines are skipped. */
export function parseMetricsText (text: string): MetricSample[] {
  const samples: MetricSample[] = []
  for (const line of text.split('\n')) {
    const match = SAMPLE.exec(line)
    if (match === null || match[1] === undefined || match[3] === undefined) continue
    const labels: Record<string, string> = {}
    for (const label of (match[2] ?? '').matchAll(LABEL)) {
      if (label[1] !== undefined) labels[label[1]] = (label[2] ?? '').replace(/\\(.)/g, '$1')
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

/** The value of the sample `name` whose labels include `labels`, or 0 when there is none (a counter never incremented). */
export function metricValue (text: string, name: string, labels: Record<string, string> = {}): number {
  const sample = parseMetricsText(text).find((candidate) => candidate.name === name && Object.entries(labels).every(([k, v]) => candidate.labels[k] === v))
  return sample?.value ?? 0
}
