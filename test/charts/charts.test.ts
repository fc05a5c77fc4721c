import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { createCertificateAuthority, createServerCertificate, createSpokeToken, encodeJoinToken, parseSpokesConfig } from '@spokelink/auth'
import type { SpokesConfig } from '@spokelink/auth'
import { runSpokelink } from '@spokelink/testkit'
import {
  CHARTS_DIR, HELM, KUBE_VERSION, NAMESPACE, RELEASE,
  helmTemplate, kubeconform, missingChartTools, ofKind, renderChart, renderNotes, run, valueSets,
} from './chart-tools.js'
import type { K8sObject, Rendered } from './chart-tools.js'

// The Helm charts, rendered by a real helm and validated by a real kubeconform against schemas generated offline
// (scripts/test-charts builds and caches all three), and their wiring checked against the code: the rendered
// args pass `spokelink server|agent --check-config` with the rendered Secrets as files.

const EXIT_NODE = 'spokelink-exit-node'
const AGENT = 'spokelink-agent'
const missing = missingChartTools()
const inCi = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false'
if (missing.length > 0 && !inCi) {
  process.stderr.write(`skipping the chart tests: ${missing.join(', ')} not found; run scripts/test-charts (it builds them)\n`)
}

interface Container {
  name: string
  args?: string[]
  env?: Array<{ name: string, value?: string, valueFrom?: Record<string, unknown> }>
  volumeMounts?: Array<{ name: string, mountPath: string }>
}
interface Volume {
  name: string
  secret?: { secretName: string, items?: Array<{ key: string, path: string }> }
  configMap?: { name: string }
  persistentVolumeClaim?: { claimName: string }
  emptyDir?: Record<string, unknown>
}
interface PodSpec { containers: Container[], volumes?: Volume[], automountServiceAccountToken?: boolean }
interface Deployment extends K8sObject { spec: { replicas: number, template: { metadata: { labels: Record<string, string> }, spec: PodSpec } } }
interface Pod extends K8sObject { spec: PodSpec }
interface ServicePort { name: string, port: number, targetPort: number | string }
interface Service extends K8sObject { spec: { type: string, ports: ServicePort[], selector?: Record<string, string> } }
interface Secret extends K8sObject { data?: Record<string, string> }
interface ConfigMap extends K8sObject { data?: Record<string, string> }

const secretData = (secret: Secret, key: string): string => Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8')

function deploymentOf (rendered: Rendered): Deployment {
  const deployments = ofKind<Deployment>(rendered.objects, 'Deployment')
  expect(deployments).toHaveLength(1)
  const [deployment] = deployments
  if (deployment === undefined) throw new Error('no Deployment')
  return deployment
}

function mainContainer (deployment: Deployment): Container {
  const [container] = deployment.spec.template.spec.containers
  if (container === undefined) throw new Error('no container')
  return container
}

function spokeServices (rendered: Rendered): Service[] {
  return ofKind<Service>(rendered.objects, 'Service').filter((s) => s.metadata.labels?.['app.kubernetes.io/component'] === 'spoke')
}

/** The spokes file the exit-node would read: the rendered Secret's, or the fixture standing for an existing one. */
function spokesFileOf (rendered: Rendered, fixtures: Map<string, Record<string, string>>): SpokesConfig {
  const deployment = deploymentOf(rendered)
  const volume = deployment.spec.template.spec.volumes?.find((v) => v.name === 'spokes')
  const name = volume?.secret?.secretName ?? ''
  const secret = ofKind<Secret>(rendered.objects, 'Secret').find((s) => s.metadata.name === name)
  const text = secret !== undefined ? secretData(secret, 'spokes.yaml') : Object.values(fixtures.get(name) ?? {})[0] ?? ''
  return parseSpokesConfig(text, `Secret ${name}`)
}

/** Dotted paths of a values.yaml's settings; maps that are Kubernetes objects or free-form count as one. */
function valueKeys (values: Record<string, unknown>, prefix = ''): string[] {
  const opaque = new Set(['podSecurityContext', 'securityContext', 'resources', 'hubSelector', 'upstreams'])
  return Object.entries(values).flatMap(([key, value]) => {
    const path = prefix + key
    const isMap = value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0
    return isMap && !opaque.has(key) ? valueKeys(value as Record<string, unknown>, `${path}.`) : [path]
  })
}

test.each([EXIT_NODE, AGENT])('the README of %s lists every value', async (chart) => {
  const values = parseYaml(await readFile(join(CHARTS_DIR, chart, 'values.yaml'), 'utf8')) as Record<string, unknown>
  const readme = await readFile(join(CHARTS_DIR, chart, 'README.md'), 'utf8')
  const keys = valueKeys(values)
  expect(keys.length).toBeGreaterThan(20)
  expect(keys.filter((key) => !readme.includes(`| \`${key}\` |`))).toEqual([])
})

/** Paths of object schemas that accept keys nobody declared: neither additionalProperties false nor a typed map. */
function openObjects (schema: unknown, path = '#'): string[] {
  if (schema === null || typeof schema !== 'object') return []
  const node = schema as Record<string, unknown>
  const own: string[] = []
  if (node.type === 'object') {
    const closed = node.additionalProperties === false
    const typedMap = node.properties === undefined && typeof node.additionalProperties === 'object'
    if (!closed && !typedMap) own.push(path)
  }
  return [...own, ...Object.entries(node).flatMap(([key, value]) => openObjects(value, `${path}/${key}`))]
}

test.each([EXIT_NODE, AGENT])('values.schema.json of %s is draft-07 and closes every object it declares', async (chart) => {
  const schema = JSON.parse(await readFile(join(CHARTS_DIR, chart, 'values.schema.json'), 'utf8')) as Record<string, unknown>
  expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#')
  // Only Kubernetes' own Affinity members stay open here; kubeconform -strict checks them once rendered.
  expect(openObjects(schema)).toEqual([
    '#/definitions/affinity/properties/nodeAffinity',
    '#/definitions/affinity/properties/podAffinity',
    '#/definitions/affinity/properties/podAntiAffinity',
  ])
})

describe.skipIf(missing.length > 0 && !inCi)('Helm charts (issue 8)', () => {
  let tmp: string
  /** Stand-ins for Secrets a value set names but does not render (existingSecret): name → file name → content. */
  const fixtures = new Map<string, Record<string, string>>()
  let fixtureJoinToken: string

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'spokelink-charts-'))
    const ca = await createCertificateAuthority()
    const server = await createServerCertificate(ca, { hosts: ['hub.internal.example.com'] })
    fixtures.set('hub-tls', { 'tls.crt': server.certPem, 'tls.key': server.keyPem })
    const existing = parseYaml(await readFile(join(CHARTS_DIR, EXIT_NODE, 'ci', 'existing-secret-values.yaml'), 'utf8')) as { existingSecret: { spokes: Array<{ name: string, ports: number[] }> } }
    const spokes = existing.existingSecret.spokes.map((spoke) => ({
      name: spoke.name,
      tokens: [{ id: createSpokeToken().id, sha256: 'ab'.repeat(32) }],
      ports: spoke.ports.map((port, i) => ({ upstream: i === 0 ? 'prometheus' : `extra${i}`, listen: `0.0.0.0:${port}` })),
    }))
    fixtures.set('hub-spokes', { 'spokes.yaml': toYaml({ spokes }) })
    fixtureJoinToken = encodeJoinToken({ server: 'wss://hub.example.com/connect', token: createSpokeToken().token })
  })
  afterAll(async () => { await rm(tmp, { recursive: true, force: true }) })

  test('the chart tools are there (scripts/test-charts builds them; in CI a missing tool is a failure)', async () => {
    expect(missing).toEqual([])
    const version = await run(HELM, ['version', '--template', '{{.Version}}'])
    expect(version.stdout).toBe('v3.22.0')
  })

  describe.each([EXIT_NODE, AGENT])('%s', (chart) => {
    test.each(valueSets(chart))('helm lint --strict: %s', async (_label, files) => {
      const args = ['lint', '--strict', join(CHARTS_DIR, chart), '--namespace', NAMESPACE, '--kube-version', KUBE_VERSION]
      for (const file of files) args.push('--values', file)
      const result = await run(HELM, args)
      expect(result.code, result.stdout + result.stderr).toBe(0)
      expect(result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed')
    })

    test.each(valueSets(chart))('kubeconform -strict accepts every rendered object: %s', async (_label, files) => {
      const rendered = await renderChart(chart, files)
      const { result, summary } = await kubeconform(rendered.text)
      expect(result.code, result.stdout + result.stderr).toBe(0)
      // Every object was checked against a schema: none skipped for want of one, none invalid.
      expect(summary).toEqual({ valid: rendered.objects.length, invalid: 0, errors: 0, skipped: 0 })
    })

    test.each(valueSets(chart))('no secret in an env var or an argument; only files carry them: %s', async (_label, files) => {
      const rendered = await renderChart(chart, files)
      const secretValues = ofKind<Secret>(rendered.objects, 'Secret')
        .flatMap((s) => Object.keys(s.data ?? {}).map((key) => secretData(s, key).trim()))
        .filter((value) => value.length >= 8)
      const pods = [...ofKind<Deployment>(rendered.objects, 'Deployment').map((d) => d.spec.template.spec), ...ofKind<Pod>(rendered.objects, 'Pod').map((p) => p.spec)]
      expect(pods.length).toBeGreaterThan(0)
      for (const pod of pods) {
        for (const container of pod.containers) {
          for (const env of container.env ?? []) {
            expect(env.valueFrom?.secretKeyRef, `${container.name} env ${env.name}`).toBeUndefined()
            for (const value of secretValues) expect(env.value ?? '').not.toContain(value)
            expect(env.value ?? '').not.toMatch(/slkj1\.|slk_[a-z0-9]{4,32}_/)
          }
          for (const arg of container.args ?? []) {
            for (const value of secretValues) expect(arg).not.toContain(value)
            expect(arg).not.toMatch(/slkj1\.|slk_[a-z0-9]{4,32}_/)
          }
        }
      }
    })

    test.each(valueSets(chart))('the rendered args pass spokelink --check-config with the rendered files: %s', async (label, files) => {
      const rendered = await renderChart(chart, files)
      const deployment = deploymentOf(rendered)
      const container = mainContainer(deployment)
      const dir = join(tmp, chart, label.replace(/[^a-z0-9]+/gi, '-'))
      const args = await withMountedFiles(rendered, deployment, container, dir, (name, keys) => {
        if (chart === AGENT) return Object.fromEntries(keys.map((key) => [key, fixtureJoinToken + '\n']))
        const fixture = fixtures.get(name)
        if (fixture === undefined) throw new Error(`${label}: Secret/ConfigMap ${name} is neither rendered nor a fixture`)
        return fixture
      })
      const proc = runSpokelink([...args, '--check-config'], { env: { SPOKELINK_LOG_LEVEL: undefined } })
      const exit = await proc.waitForExit({ timeoutMs: 60_000 })
      expect(exit, `spokelink ${args.join(' ')}\n${proc.tail()}`).toEqual({ code: 0, signal: null })
      const report = JSON.parse(proc.stdoutLines.join('\n')) as { ok: boolean, command: string, spokes?: Array<{ name: string }>, upstreams?: string[], credentials?: { from: string } }
      expect(report.ok).toBe(true)
      if (chart === EXIT_NODE) {
        expect(report.command).toBe('server')
        expect(report.spokes?.map((s) => s.name)).toEqual(spokesFileOf(rendered, fixtures).spokes.map((s) => s.name))
      } else {
        expect(report.command).toBe('agent')
        expect(report.credentials?.from).toBe('join-file')
        expect(report.upstreams).toEqual((container.args ?? []).filter((a) => a.startsWith('--upstream=')).map((a) => a.slice('--upstream='.length)))
      }
    })

    test('a misspelt value fails helm template, naming the key', async () => {
      for (const set of ['image.tagg=1', 'replica=2', 'resources.limits.memroy=1Gi', 'podSecurityContext.runAsUsr=5']) {
        const result = await helmTemplate(chart, [], [set])
        expect(result.code, set).not.toBe(0)
        expect(result.stderr, set).toMatch(/additional properties '(tagg|replica|memroy|runAsUsr)' not allowed/)
      }
    })

    test('pods run as non-root with a read-only root, no capabilities, RuntimeDefault seccomp and no API token', async () => {
      const rendered = await renderChart(chart)
      const deployment = deploymentOf(rendered)
      const pod = deployment.spec.template.spec as PodSpec & { securityContext: Record<string, unknown> }
      expect(pod.automountServiceAccountToken).toBe(false)
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } })
      const container = mainContainer(deployment) as Container & { securityContext: Record<string, unknown> }
      expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
    })
  })

  describe('exit-node wiring', () => {
    test.each(valueSets(EXIT_NODE))('each spoke has a Service whose ports lead to that spoke\'s listen ports: %s', async (_label, files) => {
      const rendered = await renderChart(EXIT_NODE, files)
      const spokes = spokesFileOf(rendered, fixtures).spokes.filter((s) => s.ports.length > 0)
      const services = spokeServices(rendered)
      const values = parseYaml(files[0] === undefined ? '{}' : await readFile(files[0], 'utf8')) as { spokeServices?: { prefix?: string } } | null
      const prefix = values?.spokeServices?.prefix ?? ''
      expect(services.map((s) => s.metadata.name).sort()).toEqual(spokes.map((s) => prefix + s.name).sort())
      const podLabels = deploymentOf(rendered).spec.template.metadata.labels
      for (const spoke of spokes) {
        const service = services.find((s) => s.metadata.name === prefix + spoke.name)
        if (service === undefined) throw new Error(`no Service for ${spoke.name}`)
        const [first] = spoke.ports
        // Port 9090 → the spoke's first listen port (what the static /federate job targets).
        expect(service.spec.ports.find((p) => p.port === 9090)?.targetPort).toBe(first?.listen.port)
        // Every listen port is also a Service port of its own number (what the /v1/sd targets name).
        for (const port of spoke.ports) {
          expect(service.spec.ports.find((p) => p.port === port.listen.port)?.targetPort ?? (port.listen.port === 9090 ? first?.listen.port : undefined)).toBe(port.listen.port)
        }
        // No port leads anywhere but this spoke's own listen ports.
        expect(new Set(service.spec.ports.map((p) => p.targetPort))).toEqual(new Set(spoke.ports.map((p) => p.listen.port)))
        expect(service.spec.type).toBe('ClusterIP')
        for (const [key, value] of Object.entries(service.spec.selector ?? {})) expect(podLabels[key]).toBe(value)
        expect(Object.keys(service.spec.selector ?? {}).length).toBeGreaterThan(0)
      }
      const args = mainContainer(deploymentOf(rendered)).args ?? []
      expect(args).toContain(`--sd-target=${prefix}{spoke}.${NAMESPACE}.svc:{port}`)
    })

    test('adding or removing a spoke changes no other spoke\'s Service, and never the Deployment', async () => {
      const base = join(CHARTS_DIR, EXIT_NODE, 'ci', 'three-spokes-values.yaml')
      const values = parseYaml(await readFile(base, 'utf8')) as { spokes: Array<{ name: string, ports: Array<{ upstream: string, listen: string }> }> }
      const before = await renderChart(EXIT_NODE, [base])
      const added = join(tmp, 'added.yaml')
      await writeFile(added, toYaml({ spokes: [...values.spokes, { name: 'orion-onprem', ports: [{ upstream: 'prometheus', listen: '0.0.0.0:19093' }] }] }))
      const removed = join(tmp, 'removed.yaml')
      await writeFile(removed, toYaml({ spokes: values.spokes.filter((_s, i) => i !== 1) }))
      for (const [what, file, expected] of [['added', added, 4], ['removed', removed, 2]] as const) {
        const after = await renderChart(EXIT_NODE, [base, file])
        expect(spokeServices(after), what).toHaveLength(expected)
        for (const service of spokeServices(after)) {
          const old = spokeServices(before).find((s) => s.metadata.name === service.metadata.name)
          if (service.metadata.name === 'spoke-orion-onprem') expect(old).toBeUndefined()
          else expect(service, `${what}: ${service.metadata.name}`).toEqual(old)
        }
        // A change of pod template would restart the exit-node and drop every other spoke's session.
        expect(deploymentOf(after), what).toEqual(deploymentOf(before))
      }
    })

    test('a spoke listening on loopback, a bad listen address or both spokes and existingSecret fail with one line', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['spokes[0].name=a', 'spokes[0].ports[0].upstream=prometheus', 'spokes[0].ports[0].listen=127.0.0.1:19090'], /loopback, which the spoke's Service cannot reach/],
        [['existingSecret.name=x', 'spokes[0].name=a'], /spokes and existingSecret.name exclude each other/],
        [['replicas=2'], /replicas > 1 needs spokeServices.selectorless=true/],
        [['tls.existingSecret=t'], /tls.existingSecret and autoTLS.enabled exclude each other/],
        [['networkPolicy.enabled=true', 'networkPolicy.hubSelector.podSelector=null'], /networkPolicy.hubSelector needs a podSelector or a namespaceSelector/],
      ]
      for (const [sets, message] of cases) {
        const result = await helmTemplate(EXIT_NODE, [], sets)
        expect(result.code, sets.join(' ')).not.toBe(0)
        expect(result.stderr).toMatch(message)
      }
      // The spokes file as text is checked by the chart itself (the schema sees only a string).
      const text = join(tmp, 'bad-listen.yaml')
      await writeFile(text, toYaml({ spokes: 'spokes: [{name: a, ports: [{upstream: p, listen: nowhere}]}]\n' }))
      const bad = await helmTemplate(EXIT_NODE, [text])
      expect(bad.code).not.toBe(0)
      expect(bad.stderr).toMatch(/spokes\[0\]\.ports\[0\]\.listen: expected "host:port", got "nowhere"/)
    })

    test('NOTES print a valid Prometheus config: a /federate job per spoke Service and the http_sd job; and the ScrapeConfig the release renders', async () => {
      const values = join(CHARTS_DIR, EXIT_NODE, 'ci', 'three-spokes-values.yaml')
      const notes = await renderNotes(EXIT_NODE, join(tmp, 'notes'), [values])
      const rendered = await renderChart(EXIT_NODE, [values])
      // The jobs: every "  - job_name:" block, handed to promtool as one scrape_configs list.
      const lines = notes.split('\n')
      const jobs: string[] = []
      lines.forEach((line, i) => {
        if (!line.startsWith('  - job_name:')) return
        const block = [line]
        for (const next of lines.slice(i + 1)) {
          if (!next.startsWith('    ')) break
          block.push(next)
        }
        jobs.push(block.join('\n'))
      })
      const config = `scrape_configs:\n${jobs.join('\n')}\n`
      const parsed = parseYaml(config) as { scrape_configs: Array<{ job_name: string, static_configs?: Array<{ targets: string[] }>, http_sd_configs?: Array<{ url: string }> }> }
      const spokes = spokesFileOf(rendered, fixtures).spokes
      expect(parsed.scrape_configs.flatMap((job) => job.static_configs?.flatMap((c) => c.targets) ?? [])).toEqual(spokes.map((s) => `spoke-${s.name}.${NAMESPACE}.svc:9090`))
      expect(parsed.scrape_configs.flatMap((job) => job.http_sd_configs?.map((c) => c.url) ?? [])).toEqual([`http://${RELEASE}-spokelink-exit-node-admin.${NAMESPACE}.svc:9464/v1/sd`])
      const file = join(tmp, 'notes-prometheus.yml')
      await writeFile(file, config)
      const check = await run('promtool', ['check', 'config', file])
      expect(check.code, check.stdout + check.stderr).toBe(0)
      // The ScrapeConfig printed is the one rendered (scrapeConfig.enabled in this value set).
      const start = lines.findIndex((line) => line === '  apiVersion: monitoring.coreos.com/v1alpha1')
      const end = lines.findIndex((line, i) => i > start && line.trim() === '')
      const printed = parseYaml(lines.slice(start, end).map((line) => line.slice(2)).join('\n')) as K8sObject & { spec: unknown }
      const [scrapeConfig] = ofKind<K8sObject & { spec: unknown }>(rendered.objects, 'ScrapeConfig')
      expect(printed.spec).toEqual(scrapeConfig?.spec)
      expect(printed.metadata.name).toBe(scrapeConfig?.metadata.name)
    })

    test('the NetworkPolicy opens /connect to connectFrom and only the admin and listen ports to the hub selector', async () => {
      const rendered = await renderChart(EXIT_NODE, [join(CHARTS_DIR, EXIT_NODE, 'ci', 'three-spokes-values.yaml')])
      interface Rule { from?: unknown[], ports: Array<{ port: number }> }
      const [policy] = ofKind<K8sObject & { spec: { ingress: Rule[] } }>(rendered.objects, 'NetworkPolicy')
      const [connect, hub] = policy?.spec.ingress ?? []
      expect(connect).toEqual({ ports: [{ port: 8123, protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }] })
      const listenPorts = spokesFileOf(rendered, fixtures).spokes.flatMap((s) => s.ports.map((p) => p.listen.port))
      expect(hub?.ports.map((p) => p.port)).toEqual([9464, ...listenPorts])
      expect(hub?.from).toEqual([{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }])
    })

    test('selectorless mode (for replicas > 1): Services without a selector and a Role limited to its EndpointSlices, its Services (get) and the leftover Endpoints of its controllers (get, delete)', async () => {
      const rendered = await renderChart(EXIT_NODE, [join(CHARTS_DIR, EXIT_NODE, 'ci', 'three-spokes-values.yaml')], [
        'replicas=2', 'spokeServices.selectorless=true', 'autoTLS.enabled=false', 'tls.existingSecret=hub-tls',
      ])
      for (const service of spokeServices(rendered)) expect(service.spec.selector).toBeUndefined()
      expect(ofKind(rendered.objects, 'PodDisruptionBudget')).toHaveLength(1)
      const [role] = ofKind<K8sObject & { rules: unknown[] }>(rendered.objects, 'Role')
      // The same rules as docs/kubernetes/exit-node-role.yaml, which the EndpointSlice e2e test binds on a real apiserver.
      const documented = parseYaml(await readFile(new URL('../../docs/kubernetes/exit-node-role.yaml', import.meta.url), 'utf8')) as { rules: unknown[] }
      expect(role?.rules).toEqual(documented.rules)
      expect(deploymentOf(rendered).spec.template.spec.automountServiceAccountToken).toBe(true)
      const container = mainContainer(deploymentOf(rendered))
      expect(container.args).toContain('--endpoint-slices')
      for (const [name, fieldPath] of [['POD_NAME', 'metadata.name'], ['POD_NAMESPACE', 'metadata.namespace'], ['POD_UID', 'metadata.uid'], ['POD_IP', 'status.podIP']]) {
        expect(container.env).toContainEqual({ name, valueFrom: { fieldRef: { fieldPath } } })
      }
      const { summary } = await kubeconform(rendered.text)
      expect(summary).toEqual({ valid: rendered.objects.length, invalid: 0, errors: 0, skipped: 0 })
    })

    test('the admin port binds the pod IP and is its own Service; the ingress routes only /connect', async () => {
      const rendered = await renderChart(EXIT_NODE, [join(CHARTS_DIR, EXIT_NODE, 'ci', 'ingress-cert-manager-values.yaml')])
      const container = mainContainer(deploymentOf(rendered))
      expect(container.args).toContain('--admin-listen=$(POD_IP):9464')
      expect(container.env).toContainEqual({ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } })
      const admin = ofKind<Service>(rendered.objects, 'Service').find((s) => s.metadata.name === `${RELEASE}-spokelink-exit-node-admin`)
      expect(admin?.spec.ports).toEqual([{ name: 'admin', port: 9464, targetPort: 'admin', protocol: 'TCP' }])
      const control = ofKind<Service>(rendered.objects, 'Service').find((s) => s.metadata.name === `${RELEASE}-spokelink-exit-node`)
      expect(control?.spec.ports.map((p) => p.name)).toEqual(['connect'])
      const [ingress] = ofKind<K8sObject & { spec: { rules: Array<{ http: { paths: Array<{ path: string }> } }> } }>(rendered.objects, 'Ingress')
      expect(ingress?.spec.rules.flatMap((r) => r.http.paths.map((p) => p.path))).toEqual(['/connect'])
    })
  })

  describe('agent wiring', () => {
    test('two replicas: PodDisruptionBudget and anti-affinity; the join token only in a Secret mounted as a file', async () => {
      const rendered = await renderChart(AGENT, [join(CHARTS_DIR, AGENT, 'ci', 'two-replicas-values.yaml')])
      const deployment = deploymentOf(rendered)
      expect(deployment.spec.replicas).toBe(2)
      expect(ofKind(rendered.objects, 'PodDisruptionBudget')).toHaveLength(1)
      expect(JSON.stringify(deployment.spec.template.spec)).toContain('requiredDuringSchedulingIgnoredDuringExecution')
      const [secret] = ofKind<Secret>(rendered.objects, 'Secret')
      expect(secretData(secret ?? { apiVersion: 'v1', kind: 'Secret', metadata: { name: '' } }, 'join-token')).toMatch(/^slkj1\./)
      expect(mainContainer(deployment).args).toContain('--join-file=/etc/spokelink/join/join-token')
    })

    test('scaling 1 → 2 replicas changes no pod template (soft anti-affinity at any count), so no agent restarts', async () => {
      const one = deploymentOf(await renderChart(AGENT, [join(CHARTS_DIR, AGENT, 'ci', 'two-replicas-values.yaml')], ['podAntiAffinity=soft', 'replicas=1']))
      const two = deploymentOf(await renderChart(AGENT, [join(CHARTS_DIR, AGENT, 'ci', 'two-replicas-values.yaml')], ['podAntiAffinity=soft', 'replicas=2']))
      expect(JSON.stringify(one.spec.template.spec)).toContain('preferredDuringSchedulingIgnoredDuringExecution')
      expect(JSON.stringify(one.spec.template)).toBe(JSON.stringify(two.spec.template))
    })

    test('hubServices: a --hub-service listener on the pod IP and a ClusterIP Service "<fullname>" with the port, for the spoke\'s remote-write', async () => {
      const rendered = await renderChart(AGENT, [join(CHARTS_DIR, AGENT, 'ci', 'two-replicas-values.yaml')])
      expect(mainContainer(deploymentOf(rendered)).args).toContain('--hub-service=remote-write=$(POD_IP):9201')
      const hub = ofKind<Service>(rendered.objects, 'Service').filter((s) => s.metadata.labels?.['app.kubernetes.io/component'] === 'hub-services')
      expect(hub.map((s) => [s.metadata.name, s.spec.type, s.spec.ports.map((p) => [p.port, p.targetPort])])).toEqual([[`${RELEASE}-${AGENT}`, 'ClusterIP', [[9201, 9201]]]])
      const none = await renderChart(AGENT, [join(CHARTS_DIR, AGENT, 'ci', 'existing-secret-values.yaml')])
      expect(ofKind<Service>(none.objects, 'Service').filter((s) => s.metadata.labels?.['app.kubernetes.io/component'] === 'hub-services')).toEqual([])
    })

    test('a join token file with a trailing newline (helm --set-file) is stored trimmed', async () => {
      const file = join(tmp, 'join-with-newline.yaml')
      await writeFile(file, toYaml({ joinToken: `${fixtureJoinToken}\n` }))
      const rendered = await renderChart(AGENT, [file])
      const [secret] = ofKind<Secret>(rendered.objects, 'Secret')
      expect(secret === undefined ? undefined : secretData(secret, 'join-token')).toBe(fixtureJoinToken)
    })

    test('a bad upstream or join token in values fails helm template', async () => {
      const unknown = await helmTemplate(AGENT, [], ['readOnly={thanos}'])
      expect(unknown.stderr).toContain('readOnly: "thanos" is not one of the upstreams (prometheus)')
      for (const set of ['upstreams.Bad_Name=prom:9090', 'upstreams.prometheus=no-port', 'joinToken=slk_abcd_notajointoken']) {
        const result = await helmTemplate(AGENT, [], [set])
        expect(result.code, set).not.toBe(0)
        expect(result.stderr, set).toContain('values don\'t meet the specifications of the schema')
      }
    })
  })
})

/**
 * Gives every volume a container mounts a temp directory holding what Kubernetes would put there (rendered
 * Secrets and ConfigMaps, or `fixture` for ones the release only names), and returns the container's args with the
 * mount paths replaced by those directories and `$(POD_IP)`/`$(POD_NAME)` expanded as the kubelet would.
 */
async function withMountedFiles (
  rendered: Rendered,
  deployment: Deployment,
  container: Container,
  dir: string,
  fixture: (name: string, keys: string[]) => Record<string, string>
): Promise<string[]> {
  const volumes = deployment.spec.template.spec.volumes ?? []
  const replacements: Array<[string, string]> = []
  for (const mount of container.volumeMounts ?? []) {
    const volume = volumes.find((v) => v.name === mount.name)
    if (volume === undefined) throw new Error(`volumeMount ${mount.name} has no volume`)
    const target = join(dir, mount.name)
    await mkdir(target, { recursive: true })
    let files: Record<string, string> = {}
    if (volume.secret !== undefined) {
      const { secretName, items } = volume.secret
      const secret = ofKind<Secret>(rendered.objects, 'Secret').find((s) => s.metadata.name === secretName)
      const keys = items?.map((item) => item.key)
      const all = secret !== undefined
        ? Object.fromEntries(Object.keys(secret.data ?? {}).map((key) => [key, secretData(secret, key)]))
        : fixture(secretName, keys ?? [])
      files = items === undefined ? all : Object.fromEntries(items.map((item) => [item.path, all[item.key] ?? '']))
    } else if (volume.configMap !== undefined) {
      const name = volume.configMap.name
      const configMap = ofKind<ConfigMap>(rendered.objects, 'ConfigMap').find((c) => c.metadata.name === name)
      files = configMap?.data ?? fixture(name, [])
    }
    for (const [file, content] of Object.entries(files)) await writeFile(join(target, file), content)
    replacements.push([mount.mountPath, target])
  }
  replacements.sort((a, b) => b[0].length - a[0].length)
  const env: Record<string, string> = { POD_IP: '10.244.0.7', POD_NAME: `${deployment.metadata.name}-5d9c7b6f4-x2x7q` }
  return (container.args ?? []).map((arg) => {
    const expanded = arg.replace(/\$\(([A-Z_]+)\)/g, (match, name: string) => env[name] ?? match)
    // A path argument is --flag=PATH; PATH moves from the mount to its temp directory (the longest mount wins).
    const eq = expanded.indexOf('=')
    const value = expanded.slice(eq + 1)
    const mount = replacements.find(([from]) => value === from || value.startsWith(`${from}/`))
    return eq < 0 || mount === undefined ? expanded : `${expanded.slice(0, eq + 1)}${mount[1]}${value.slice(mount[0].length)}`
  })
}
