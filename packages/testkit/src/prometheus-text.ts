/** One sample of the Prometheus text exposition format. */
export interface TextSample {
  name: string
  labels: Record<string, string>
  value: number
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** Parses `/metrics` text (comments skipped, label values unescaped) into samples. */
export function parsePrometheusText (text: string): TextSample[] {
  const samples: TextSample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = SAMPLE_LINE.exec(line)
    if (match === null) throw new Error(`not a Prometheus text sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').matchAll(LABEL_PAIR)) {
      labels[pair[1] ?? ''] = (pair[2] ?? '').replace(/\\(.)/g, (_all: string, c: string) => c === 'n' ? '\n' : c)
    }
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) })
  }
  return samples
}

/**
 * The value of the one sample named `name` whose labels include `labels`; undefined when none matches.
 * @throws Error when several samples match (the test should name more labels)
 */
export function sampleValue (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = parsePrometheusText(text).filter((sample) => sample.name === name && Object.entries(labels).every(([k, v]) => sample.labels[k] === v))
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return matches[0]?.value
}
