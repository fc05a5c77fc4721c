import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { cp, readFile, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'

// Where scripts/test-charts puts the tools; the env vars it exports win, so a developer can point at their own.
const TOOLS = process.env.SPOKELINK_TOOLS ?? join(homedir(), '.cache', 'spokelink-tools')
export const HELM = process.env.SPOKELINK_HELM ?? join(TOOLS, 'bin', 'helm')
export const KUBECONFORM = process.env.SPOKELINK_KUBECONFORM ?? join(TOOLS, 'bin', 'kubeconform')
export const SCHEMAS = process.env.SPOKELINK_SCHEMAS ?? join(TOOLS, 'schemas', 'k8s-v1.34.3+po-v0.93.0')
/** The Kubernetes version the charts are rendered and validated for. */
export const KUBE_VERSION = '1.34.0'
export const CHARTS_DIR = fileURLToPath(new URL('../../charts/', import.meta.url))

/** Tools that are not there (empty when the tier can run). */
export function missingChartTools (): string[] {
  return [HELM, KUBECONFORM, join(SCHEMAS, '.complete')].filter((path) => !existsSync(path))
}

export interface CommandResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to its end; `input` goes to its stdin. */
export async function run (command: string, args: readonly string[], input?: string): Promise<CommandResult> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  child.stdin.end(input ?? '')
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  return { code, stdout, stderr }
}

/** One rendered Kubernetes object, loosely typed: tests narrow what they read. */
export interface K8sObject {
  apiVersion: string
  kind: string
  metadata: { name: string, namespace?: string, labels?: Record<string, string>, annotations?: Record<string, string> }
  [key: string]: unknown
}

export interface Rendered {
  /** `helm template`'s YAML, as kubeconform reads it. */
  text: string
  objects: K8sObject[]
}

export const RELEASE = 'hub'
export const NAMESPACE = 'monitoring'

/**
 * `helm template` runs of {@link renderChart}, by chart, values files (path and content) and `--set`s: most value
 * sets are rendered by several tests, and a helm run costs far more than parsing its output again.
 */
const renders = new Map<string, Promise<CommandResult>>()

/**
 * `helm template` of a chart with values files and `--set`s; the same inputs render once per test file, and each
 * call parses the output anew, so a test may change the objects it gets.
 * @throws Error with helm's stderr when it fails
 */
export async function renderChart (chart: string, valuesFiles: readonly string[] = [], sets: readonly string[] = []): Promise<Rendered> {
  const contents = await Promise.all(valuesFiles.map(async (file) => readFile(file, 'utf8')))
  const key = JSON.stringify([chart, valuesFiles, contents, sets])
  let render = renders.get(key)
  if (render === undefined) {
    render = helmTemplate(chart, valuesFiles, sets)
    renders.set(key, render)
  }
  const result = await render
  if (result.code !== 0) throw new Error(`helm template ${chart} ${valuesFiles.join(' ')} ${sets.join(' ')} failed:\n${result.stderr}`)
  const objects = parseAllDocuments(result.stdout)
    .map((doc) => doc.toJS() as unknown)
    .filter((value): value is K8sObject => value !== null && typeof value === 'object')
  return { text: result.stdout, objects }
}

/** `helm template` as it ran, for tests that expect it to fail. */
export async function helmTemplate (chart: string, valuesFiles: readonly string[] = [], sets: readonly string[] = []): Promise<CommandResult> {
  const args = ['template', RELEASE, join(CHARTS_DIR, chart), '--namespace', NAMESPACE, '--kube-version', KUBE_VERSION]
  for (const file of valuesFiles) args.push('--values', file)
  for (const set of sets) args.push('--set', set)
  return run(HELM, args)
}

/** Every value set of a chart: the defaults and each `ci/*.yaml`, as [label, values files]. */
export function valueSets (chart: string): Array<[string, string[]]> {
  const ciDir = join(CHARTS_DIR, chart, 'ci')
  const files = existsSync(ciDir) ? readdirSync(ciDir).filter((f) => f.endsWith('.yaml')).sort() : []
  return [['default values', []], ...files.map((f): [string, string[]] => [`ci/${f}`, [join(ciDir, f)]])]
}

export interface KubeconformSummary {
  valid: number
  invalid: number
  errors: number
  skipped: number
}

/** kubeconform -strict against the offline schemas (core + CRDs); never downloads, never skips a kind. */
export async function kubeconform (manifests: string): Promise<{ result: CommandResult, summary: KubeconformSummary }> {
  const result = await run(KUBECONFORM, [
    '-strict',
    '-summary',
    '-output', 'json',
    '-kubernetes-version', KUBE_VERSION,
    '-schema-location', join(SCHEMAS, '{{ .ResourceKind }}{{ .KindSuffix }}.json'),
    '-schema-location', join(SCHEMAS, '{{ .Group }}', '{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'),
    '-',
  ], manifests)
  const parsed = JSON.parse(result.stdout === '' ? '{}' : result.stdout) as { summary?: KubeconformSummary }
  return { result, summary: parsed.summary ?? { valid: 0, invalid: 0, errors: 0, skipped: 0 } }
}

/** The objects of one kind. */
export function ofKind<T extends K8sObject = K8sObject> (objects: readonly K8sObject[], kind: string): T[] {
  return objects.filter((o) => o.kind === kind) as T[]
}

/**
 * What `helm install` would print as NOTES, without a cluster: `helm template` cannot show NOTES.txt, so a copy of
 * the chart in `workDir` gets one more template that carries the NOTES text as a YAML string.
 */
export async function renderNotes (chart: string, workDir: string, valuesFiles: readonly string[] = []): Promise<string> {
  const copy = join(workDir, chart)
  await cp(join(CHARTS_DIR, chart), copy, { recursive: true })
  const notes = await readFile(join(copy, 'templates', 'NOTES.txt'), 'utf8')
  await writeFile(join(copy, 'templates', '_notes-under-test.tpl'), `{{- define "notes-under-test" -}}\n${notes}\n{{- end }}\n`)
  await writeFile(join(copy, 'templates', 'notes-under-test.yaml'), 'kind: NotesUnderTest\ntext: {{ include "notes-under-test" . | toJson }}\n')
  const args = ['template', RELEASE, copy, '--namespace', NAMESPACE, '--kube-version', KUBE_VERSION, '--show-only', 'templates/notes-under-test.yaml']
  for (const file of valuesFiles) args.push('--values', file)
  const result = await run(HELM, args)
  if (result.code !== 0) throw new Error(`rendering NOTES.txt of ${chart} failed:\n${result.stderr}`)
  const [doc] = parseAllDocuments(result.stdout).map((d) => d.toJS() as unknown)
  return (doc as { text: string }).text
}
