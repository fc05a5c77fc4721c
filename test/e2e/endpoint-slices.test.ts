/**
 * Exit-node replicas through Kubernetes itself, on a REAL kube-apiserver (+ Debian's etcd) on loopback: each
 * exit-node keeps one EndpointSlice per spoke it holds a session for, authenticated as a service account whose
 * token (TokenRequest) is bound to exactly the Role in docs/kubernetes/exit-node-role.yaml. No controller-manager
 * runs, so nothing but spokelink removes a slice: what disappears, spokelink deleted.
 */
import { once } from 'node:events'
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, beforeEach, describe, expect, onTestFailed, onTestFinished, test } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken } from '@spokelink/auth'
import { buildEndpointSlice, createExitNode, endpointSliceName } from '@spokelink/exit-node'
import type { ExitNode, PodIdentity } from '@spokelink/exit-node'
import { createKubeEndpointSliceApi, loadKubeConfig } from 'spokelink'
import { apiServerMissing, createLogCapture, freePort, runSpokelink, startApiServer, waitFor } from '@spokelink/testkit'
import type { RunningApiServer } from '@spokelink/testkit'
import { listen, startAgent } from './in-process-tunnel.js'

const NAMESPACE = 'hub'
const ROLE_FILE = new URL('../../docs/kubernetes/exit-node-role.yaml', import.meta.url)
const SLICES = `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices`

const missing = apiServerMissing()
if (missing !== undefined) process.stdout.write(`skipping endpoint-slices tests: ${missing}\n`)

const logs = createLogCapture()
beforeEach(() => {
  logs.clear()
  onTestFailed(() => { process.stderr.write(`--- logs of the failed test ---\n${logs.text()}`) })
})
const testLogger = (name: string): Logger => logs.logger(name)

interface SliceBody {
  metadata: { name: string, labels: Record<string, string>, ownerReferences?: Array<Record<string, unknown>> }
  addressType: string
  endpoints: Array<{ addresses: string[], conditions: { ready: boolean } }>
  ports: Array<{ name: string, port: number, protocol: string }>
}

function spokesYaml (spoke: string, token: CreatedSpokeToken, dataPort: number): string {
  return `spokes:\n  - name: ${spoke}\n    tokens: [{id: "${token.id}", sha256: "${token.sha256}"}]\n    ports: [{upstream: prometheus, listen: "127.0.0.1:${dataPort}"}]\n`
}

describe.skipIf(missing !== undefined)('EndpointSlices on a real kube-apiserver', () => {
  let api: RunningApiServer
  /** Kubeconfig of the exit-node's service account (Role from docs/kubernetes/exit-node-role.yaml only). */
  let exitNodeKubeconfig: string
  let adminKubeconfig: string
  let exitNodeToken: string
  const pods: Record<'a' | 'b', PodIdentity> = { a: { name: 'exit-node-a', ip: '10.244.0.11', uid: '' }, b: { name: 'exit-node-b', ip: '10.244.0.12', uid: '' } }

  async function create (path: string, body: unknown): Promise<Record<string, unknown>> {
    const res = await api.request('POST', path, body)
    if (res.status !== 201) throw new Error(`POST ${path}: HTTP ${res.status}: ${JSON.stringify(res.body)}`)
    return res.body as Record<string, unknown>
  }

  async function createPod (name: string): Promise<string> {
    const pod = await create(`/api/v1/namespaces/${NAMESPACE}/pods`, { metadata: { name }, spec: { containers: [{ name: 'exit-node', image: 'localhost/spokelink:dev' }] } })
    return (pod.metadata as { uid: string }).uid
  }

  async function deletePod (name: string): Promise<void> {
    const res = await api.request('DELETE', `/api/v1/namespaces/${NAMESPACE}/pods/${name}`, { gracePeriodSeconds: 0 })
    expect(res.status).toBe(200)
    // No kubelet: a pod without a node is removed at once with grace 0.
    await waitFor(async () => (await api.request('GET', `/api/v1/namespaces/${NAMESPACE}/pods/${name}`)).status === 404, { what: `pod ${name} gone` })
  }

  /** A pod that stays terminating after its delete (a finalizer holds it), as one on a lost node does. */
  async function createTerminatingPod (name: string): Promise<{ uid: string, release: () => Promise<void> }> {
    const pod = await create(`/api/v1/namespaces/${NAMESPACE}/pods`, { metadata: { name, finalizers: ['spokelink.test/hold'] }, spec: { containers: [{ name: 'exit-node', image: 'localhost/spokelink:dev' }] } })
    const path = `/api/v1/namespaces/${NAMESPACE}/pods/${name}`
    const deleted = await api.request('DELETE', path, { gracePeriodSeconds: 0 })
    expect(deleted.status, JSON.stringify(deleted.body).slice(0, 300)).toBe(200)
    const held = await api.request('GET', path)
    expect(held.status, JSON.stringify(held.body).slice(0, 300)).toBe(200)
    expect((held.body as { metadata: Record<string, unknown> }).metadata).toHaveProperty('deletionTimestamp')
    const release = async (): Promise<void> => {
      const current = (await api.request('GET', path)).body as { metadata: Record<string, unknown> }
      expect((await api.request('PUT', path, { ...current, metadata: { ...current.metadata, finalizers: [] } })).status).toBe(200)
      await waitFor(async () => (await api.request('GET', path)).status === 404, { what: `pod ${name} gone` })
    }
    return { uid: (pod.metadata as { uid: string }).uid, release }
  }

  async function getSlice (name: string): Promise<SliceBody | undefined> {
    const res = await api.request('GET', `${SLICES}/${name}`)
    if (res.status === 404) return undefined
    if (res.status !== 200) throw new Error(`GET slice ${name}: HTTP ${res.status}`)
    return res.body as SliceBody
  }

  async function slicesOfService (service: string): Promise<SliceBody[]> {
    const res = await api.request('GET', `${SLICES}?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`)
    return (res.body as { items: SliceBody[] }).items
  }

  /** An in-process exit-node publishing EndpointSlices as `pod`, through the service account's kubeconfig. */
  async function startPublishingExitNode (spokesText: string, pod: PodIdentity, name: string): Promise<{ exitNode: ExitNode, url: string, registry: Registry }> {
    const registry = new Registry()
    const apiClient = createKubeEndpointSliceApi(loadKubeConfig({ KUBECONFIG: exitNodeKubeconfig }), NAMESPACE)
    const exitNode = createExitNode({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0, shutdownGraceMs: 500 }, parseSpokesConfig(spokesText, 'test'), {
      logger: testLogger(name),
      registry,
      endpointSlices: { namespace: NAMESPACE, pod, api: apiClient, retryInitialDelayMs: 50, retryMaxDelayMs: 500 },
    })
    onTestFinished(async () => { await exitNode.close() })
    const { port } = await exitNode.listen()
    return { exitNode, url: `ws://127.0.0.1:${port}/connect`, registry }
  }

  async function startUpstream (): Promise<number> {
    const server = net.createServer((socket) => { socket.on('error', () => { /* the tunnel may reset it when a test ends */ }) })
    const sockets = new Set<net.Socket>()
    server.on('connection', (socket) => { sockets.add(socket) })
    const port = await listen(server)
    onTestFinished(() => { for (const socket of sockets) socket.destroy() })
    return port
  }

  async function metric (registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
    const found = (await registry.getSingleMetric(name)?.get())?.values.find((value) => Object.entries(labels).every(([key, v]) => value.labels[key] === v))
    return found?.value ?? 0
  }

  beforeAll(async () => {
    api = await startApiServer()
    await create('/api/v1/namespaces', { metadata: { name: NAMESPACE } })
    // No controller-manager makes the default service account; pods need one to pass admission.
    await create(`/api/v1/namespaces/${NAMESPACE}/serviceaccounts`, { metadata: { name: 'default' } })
    await create(`/api/v1/namespaces/${NAMESPACE}/serviceaccounts`, { metadata: { name: 'spokelink-exit-node' } })
    const role = parseYaml(await readFile(ROLE_FILE, 'utf8')) as { metadata: Record<string, string> }
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/roles`, { ...role, metadata: { ...role.metadata, namespace: NAMESPACE } })
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/rolebindings`, {
      metadata: { name: 'spokelink-exit-node' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name },
      subjects: [{ kind: 'ServiceAccount', name: 'spokelink-exit-node', namespace: NAMESPACE }],
    })
    const tokenRequest = await create(`/api/v1/namespaces/${NAMESPACE}/serviceaccounts/spokelink-exit-node/token`, {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
    })
    const token = (tokenRequest.status as { token: string }).token
    exitNodeToken = token
    exitNodeKubeconfig = await api.writeKubeconfig(token, 'exit-node')
    adminKubeconfig = await api.writeKubeconfig(api.adminToken, 'admin')
    // The service account can do what the Role says and nothing else.
    expect((await api.request('GET', `${SLICES}`, undefined, token)).status).toBe(200)
    expect((await api.request('GET', `/api/v1/namespaces/${NAMESPACE}/secrets`, undefined, token)).status).toBe(403)
    expect((await api.request('GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', undefined, token)).status).toBe(403)
    pods.a.uid = await createPod(pods.a.name)
    pods.b.uid = await createPod(pods.b.name)
  }, 180_000)

  afterAll(async () => { await api?.close() })

  test('a spoke\'s slice appears with its first session (pod IP, data port, labels, owner) and goes with its last', async () => {
    const spoke = 'orion-aws'
    const token = createSpokeToken()
    const dataPort = await freePort()
    const node = await startPublishingExitNode(spokesYaml(spoke, token, dataPort), pods.a, 'exit-node-a')
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: await startUpstream() }]
    const sliceName = endpointSliceName(spoke, pods.a.name)
    expect(await getSlice(sliceName)).toBeUndefined()

    const first = await startAgent({ server: node.url, token: token.token, upstreams }, testLogger('agent-1'))
    const slice = await waitFor(async () => getSlice(sliceName), { what: `slice ${sliceName}`, timeoutMs: 30_000 })
    expect(slice.metadata.labels).toEqual({
      'kubernetes.io/service-name': spoke,
      'endpointslice.kubernetes.io/managed-by': 'spokelink',
      'spokelink.dev/spoke': spoke,
    })
    expect(slice.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Pod', name: pods.a.name, uid: pods.a.uid }])
    expect(slice.addressType).toBe('IPv4')
    expect(slice.endpoints).toMatchObject([{ addresses: [pods.a.ip], conditions: { ready: true }, targetRef: { kind: 'Pod', name: pods.a.name, uid: pods.a.uid } }])
    expect([...slice.ports].sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: `p${dataPort}`, port: dataPort, protocol: 'TCP' },
      { name: 'prometheus', port: dataPort, protocol: 'TCP' },
    ])
    // The slice can be seen at the apiserver before the exit-node has read the create's answer.
    await node.exitNode.endpointSlices?.settled()
    expect(await metric(node.registry, 'spokelink_endpoint_slices')).toBe(1)

    // A second agent replica of the same spoke; the first one leaving keeps the slice.
    const second = await startAgent({ server: node.url, token: token.token, upstreams }, testLogger('agent-2'))
    await waitFor(() => node.exitNode.sessions.sessionsOf(spoke).length === 2, { what: 'two sessions' })
    await first.close({ graceMs: 0 })
    await waitFor(() => node.exitNode.sessions.sessionsOf(spoke).length === 1, { what: 'one session left' })
    await node.exitNode.endpointSlices?.settled()
    expect(await getSlice(sliceName)).toBeDefined()

    await second.close({ graceMs: 0 })
    await waitFor(async () => await getSlice(sliceName) === undefined ? true : undefined, { what: `slice ${sliceName} deleted`, timeoutMs: 30_000 })
    // As with the create: the apiserver has deleted it before the exit-node has read the delete's answer.
    await node.exitNode.endpointSlices?.settled()
    expect(await metric(node.registry, 'spokelink_endpoint_slices')).toBe(0)
    expect(await metric(node.registry, 'spokelink_endpoint_slice_errors_total', { operation: 'publish' })).toBe(0)
  }, 60_000)

  test('two replicas each keep their own slice of the same spoke; one losing its session removes only its own', async () => {
    const spoke = 'orion-gcp'
    const token = createSpokeToken()
    const [portA, portB] = [await freePort(), await freePort()]
    const nodeA = await startPublishingExitNode(spokesYaml(spoke, token, portA), pods.a, 'exit-node-a')
    const nodeB = await startPublishingExitNode(spokesYaml(spoke, token, portB), pods.b, 'exit-node-b')
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: await startUpstream() }]
    await startAgent({ server: nodeA.url, token: token.token, upstreams }, testLogger('agent-a'))
    const agentB = await startAgent({ server: nodeB.url, token: token.token, upstreams }, testLogger('agent-b'))

    const endpointsOf = async (): Promise<string[]> => (await slicesOfService(spoke))
      .map((slice) => `${slice.endpoints[0]?.addresses[0] ?? ''}:${slice.ports.find((port) => port.name === 'prometheus')?.port ?? 0}`).sort()
    await waitFor(async () => (await endpointsOf()).length === 2, { what: 'a slice per replica', timeoutMs: 30_000 })
    expect(await endpointsOf()).toEqual([`${pods.a.ip}:${portA}`, `${pods.b.ip}:${portB}`].sort())

    await agentB.close({ graceMs: 0 })
    await waitFor(async () => (await endpointsOf()).length === 1, { what: 'replica b\'s slice deleted', timeoutMs: 30_000 })
    expect(await endpointsOf()).toEqual([`${pods.a.ip}:${portA}`])
    // Replica a's reconcile leaves b's pod's (live) slices alone and keeps its own.
    await nodeA.exitNode.endpointSlices?.reconcile()
    await nodeA.exitNode.endpointSlices?.settled()
    expect(await endpointsOf()).toEqual([`${pods.a.ip}:${portA}`])
  }, 60_000)

  test('the reconcile sweeps slices of deleted, replaced or terminating pods, deletes own stale ones, re-creates a missing one and leaves live pods\' alone', async () => {
    const admin = createKubeEndpointSliceApi(loadKubeConfig({ KUBECONFIG: adminKubeconfig }), NAMESPACE)
    const port = [{ upstream: 'prometheus', host: '0.0.0.0', port: 19090 }]
    const dead: PodIdentity = { name: 'exit-node-dead', ip: '10.244.0.13', uid: await createPod('exit-node-dead') }
    const reborn: PodIdentity = { name: 'exit-node-reborn', ip: '10.244.0.14', uid: await createPod('exit-node-reborn') }
    const terminating = await createTerminatingPod('exit-node-lost')
    onTestFinished(terminating.release)
    const lost: PodIdentity = { name: 'exit-node-lost', ip: '10.244.0.15', uid: terminating.uid }
    for (const slice of [
      buildEndpointSlice('orion-lost', 'orion-lost', lost, port),
      buildEndpointSlice('orion-dead', 'orion-dead', dead, port),
      buildEndpointSlice('orion-reborn', 'orion-reborn', reborn, port),
      buildEndpointSlice('orion-live', 'orion-live', pods.b, port),
      buildEndpointSlice('orion-stale', 'orion-stale', pods.a, port),
    ]) expect(await admin.createSlice(slice)).not.toBe('exists')
    await deletePod(dead.name)
    await deletePod(reborn.name)
    const rebornUid = await createPod(reborn.name)
    expect(rebornUid).not.toBe(reborn.uid)
    // Nothing else deletes them: no garbage collector runs against this apiserver.
    expect(await getSlice(endpointSliceName('orion-dead', dead.name))).toBeDefined()

    const spoke = 'orion-azure'
    const token = createSpokeToken()
    const node = await startPublishingExitNode(spokesYaml(spoke, token, await freePort()), pods.a, 'exit-node-a')
    await startAgent({ server: node.url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: await startUpstream() }] }, testLogger('agent'))
    const own = endpointSliceName(spoke, pods.a.name)
    await waitFor(async () => getSlice(own), { what: `slice ${own}`, timeoutMs: 30_000 })
    // Someone deletes the live spoke's slice by hand: the reconcile puts it back.
    expect(await admin.deleteSlice(own)).toBe('deleted')

    await node.exitNode.endpointSlices?.reconcile()
    await node.exitNode.endpointSlices?.settled()
    expect(await getSlice(endpointSliceName('orion-dead', dead.name))).toBeUndefined()
    expect(await getSlice(endpointSliceName('orion-reborn', reborn.name))).toBeUndefined()
    expect(await getSlice(endpointSliceName('orion-lost', lost.name))).toBeUndefined()
    expect(await getSlice(endpointSliceName('orion-stale', pods.a.name))).toBeUndefined()
    expect(await getSlice(endpointSliceName('orion-live', pods.b.name))).toBeDefined()
    expect(await getSlice(own)).toBeDefined()
    expect(await metric(node.registry, 'spokelink_endpoint_slices_swept_total')).toBe(3)
    expect(await admin.deleteSlice(endpointSliceName('orion-live', pods.b.name))).toBe('deleted')
  }, 60_000)

  test('a spoke Service upgraded to no selector loses the controllers\' leftover slices and Endpoints; one with a selector keeps them', async () => {
    const services = { upgraded: 'orion-upgraded', selected: 'orion-selected' }
    const [tokenUpgraded, tokenSelected] = [createSpokeToken(), createSpokeToken()]
    // What Kubernetes' endpointslice and endpoints controllers leave on a Service that had a selector, naming a pod
    // of that time (no controller-manager runs here: they are made by hand, as the controllers label them).
    const leftovers = async (service: string, selector: Record<string, string> | undefined): Promise<void> => {
      await create(`/api/v1/namespaces/${NAMESPACE}/services`, { metadata: { name: service }, spec: { ports: [{ port: 9090 }], selector } })
      await create(SLICES, {
        metadata: { name: `${service}-ctrl`, labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['10.244.0.99'], conditions: { ready: true } }],
        ports: [{ port: 19090, protocol: 'TCP' }],
      })
      await create(`/api/v1/namespaces/${NAMESPACE}/endpoints`, {
        metadata: { name: service, labels: { 'endpoints.kubernetes.io/managed-by': 'endpoint-controller' } },
        subsets: [{ addresses: [{ ip: '10.244.0.99' }], ports: [{ port: 19090 }] }],
      })
    }
    await leftovers(services.upgraded, undefined)
    await leftovers(services.selected, { app: 'exit-node' })
    const endpointsStatus = async (name: string): Promise<number> => (await api.request('GET', `/api/v1/namespaces/${NAMESPACE}/endpoints/${name}`)).status

    const [portUpgraded, portSelected] = [await freePort(), await freePort()]
    const spokes = `spokes:
  - name: ${services.upgraded}
    tokens: [{id: "${tokenUpgraded.id}", sha256: "${tokenUpgraded.sha256}"}]
    ports: [{upstream: prometheus, listen: "127.0.0.1:${portUpgraded}"}]
  - name: ${services.selected}
    tokens: [{id: "${tokenSelected.id}", sha256: "${tokenSelected.sha256}"}]
    ports: [{upstream: prometheus, listen: "127.0.0.1:${portSelected}"}]
`
    const node = await startPublishingExitNode(spokes, pods.a, 'exit-node-a')
    const upstreams = [{ name: 'prometheus', host: '127.0.0.1', port: await startUpstream() }]
    await startAgent({ server: node.url, token: tokenUpgraded.token, upstreams }, testLogger('agent-upgraded'))
    await startAgent({ server: node.url, token: tokenSelected.token, upstreams }, testLogger('agent-selected'))
    await waitFor(async () => (await getSlice(endpointSliceName(services.selected, pods.a.name))) !== undefined && (await getSlice(endpointSliceName(services.upgraded, pods.a.name))) !== undefined, { what: 'both spokes published', timeoutMs: 30_000 })
    await node.exitNode.endpointSlices?.settled()

    expect((await slicesOfService(services.upgraded)).map((slice) => slice.metadata.name)).toEqual([endpointSliceName(services.upgraded, pods.a.name)])
    expect(await endpointsStatus(services.upgraded)).toBe(404)
    expect((await slicesOfService(services.selected)).map((slice) => slice.metadata.name).sort()).toEqual([`${services.selected}-ctrl`, endpointSliceName(services.selected, pods.a.name)].sort())
    expect(await endpointsStatus(services.selected)).toBe(200)
    expect(await metric(node.registry, 'spokelink_endpoint_controller_leftovers_deleted_total')).toBe(2)
    expect(logs.lines.filter((line) => line.includes('left on the spoke Service')).length).toBe(1)
    expect(await metric(node.registry, 'spokelink_endpoint_slice_errors_total', { operation: 'leftovers' })).toBe(0)
  }, 60_000)

  test('with a Role on endpointslices only, publishing works and the sweep turns itself off after one 403', async () => {
    await create(`/api/v1/namespaces/${NAMESPACE}/serviceaccounts`, { metadata: { name: 'slices-only' } })
    const role = parseYaml(await readFile(ROLE_FILE, 'utf8')) as { rules: Array<{ resources: string[] }> }
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/roles`, { metadata: { name: 'slices-only' }, rules: role.rules.filter((rule) => !rule.resources.includes('pods')) })
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/rolebindings`, {
      metadata: { name: 'slices-only' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'slices-only' },
      subjects: [{ kind: 'ServiceAccount', name: 'slices-only', namespace: NAMESPACE }],
    })
    const tokenRequest = await create(`/api/v1/namespaces/${NAMESPACE}/serviceaccounts/slices-only/token`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } })
    const kubeconfig = await api.writeKubeconfig((tokenRequest.status as { token: string }).token, 'slices-only')
    // Another live replica's slice gives the sweep a pod to read.
    const other = buildEndpointSlice('orion-other', 'orion-other', pods.b, [{ upstream: 'prometheus', host: '0.0.0.0', port: 19090 }])
    const admin = createKubeEndpointSliceApi(loadKubeConfig({ KUBECONFIG: adminKubeconfig }), NAMESPACE)
    expect(await admin.createSlice(other)).not.toBe('exists')
    onTestFinished(async () => { await admin.deleteSlice(other.name) })

    const spoke = 'orion-rbac'
    const token = createSpokeToken()
    const registry = new Registry()
    const exitNode = createExitNode({ host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0, shutdownGraceMs: 500 }, parseSpokesConfig(spokesYaml(spoke, token, await freePort()), 'test'), {
      logger: testLogger('exit-node-a'),
      registry,
      endpointSlices: { namespace: NAMESPACE, pod: pods.a, api: createKubeEndpointSliceApi(loadKubeConfig({ KUBECONFIG: kubeconfig }), NAMESPACE) },
    })
    onTestFinished(async () => { await exitNode.close() })
    const { port } = await exitNode.listen()
    await startAgent({ server: `ws://127.0.0.1:${port}/connect`, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: await startUpstream() }] }, testLogger('agent'))
    await waitFor(async () => getSlice(endpointSliceName(spoke, pods.a.name)), { what: 'slice published without pod rights', timeoutMs: 30_000 })
    await exitNode.endpointSlices?.reconcile()
    await exitNode.endpointSlices?.reconcile()
    expect(await metric(registry, 'spokelink_endpoint_slice_errors_total', { operation: 'sweep' })).toBe(1)
    expect(logs.lines.filter((line) => line.includes('the sweep of dead replicas')).length).toBe(1)
    expect(logs.text()).toContain('HTTP 403')
    expect(await getSlice(other.name)).toBeDefined()
  }, 60_000)

  test('spokelink server --endpoint-slices withdraws its slices on SIGTERM before it drains', async () => {
    const spoke = 'orion-onprem'
    const token = createSpokeToken()
    const dataPort = await freePort()
    const dir = await mkdtemp(join(tmpdir(), 'spokelink-slices-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, spokesYaml(spoke, token, dataPort))
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, '--endpoint-slices', '--shutdown-grace', '60s'], {
      env: { KUBECONFIG: exitNodeKubeconfig, POD_NAME: pods.a.name, POD_IP: pods.a.ip, POD_NAMESPACE: NAMESPACE, POD_UID: pods.a.uid, SPOKELINK_LOG_LEVEL: 'debug' },
    })
    onTestFinished(async () => { await server.kill('SIGKILL') })
    onTestFailed(() => { process.stderr.write(`--- spokelink server output ---\n${server.output()}\n`) })
    const listening = await server.waitForLog((entry) => entry.msg === 'listening' && entry.listener === 'control', { what: 'server listening', timeoutMs: 30_000 })
    // An upstream that accepts and never answers: the scrape in flight keeps the exit-node draining.
    const accepted: net.Socket[] = []
    const upstream = net.createServer((socket) => { accepted.push(socket); socket.on('error', () => {}) })
    const upstreamPort = await listen(upstream)
    // After listen(): finished-hooks run last-registered first, and the upstream's close waits for these sockets.
    onTestFinished(() => { for (const socket of accepted) socket.destroy() })
    const agent = await startAgent({ server: `ws://127.0.0.1:${String(listening.port)}/connect`, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }] }, testLogger('agent'))
    const sliceName = endpointSliceName(spoke, pods.a.name)
    await waitFor(async () => getSlice(sliceName), { what: `slice ${sliceName}`, timeoutMs: 30_000 })

    const scrape = net.connect({ host: '127.0.0.1', port: dataPort })
    onTestFinished(() => { scrape.destroy() })
    scrape.on('error', () => {})
    await once(scrape, 'connect')
    scrape.write('GET /federate HTTP/1.1\r\nhost: x\r\n\r\n')
    await waitFor(() => accepted.length === 1, { what: 'the scrape reaching the upstream' })

    server.child.kill('SIGTERM')
    await waitFor(async () => await getSlice(sliceName) === undefined ? true : undefined, { what: `slice ${sliceName} withdrawn`, timeoutMs: 30_000 })
    // Withdrawn while the exit-node still drains: the scrape is still open, the process still runs.
    expect(server.exit).toBeUndefined()
    expect(scrape.destroyed).toBe(false)
    const messages = (): string[] => server.logs.map((entry) => String(entry.msg))
    expect(messages()).not.toContain('shut down')

    scrape.destroy()
    await agent.close({ graceMs: 0 })
    const exit = await server.waitForExit({ timeoutMs: 70_000 })
    expect(exit).toEqual({ code: 0, signal: null })
    // By each line's own time, not by arrival: at load 16 pino's stdout delivered the withdrawn line after
    // "shut down" though it was logged 144 ms before it.
    const loggedAt = (msg: string): number => Number(server.logs.find((entry) => entry.msg === msg)?.time)
    expect(loggedAt('endpoint slices withdrawn')).toBeGreaterThanOrEqual(loggedAt('shutting down'))
    expect(loggedAt('endpoint slices withdrawn')).toBeLessThanOrEqual(loggedAt('shut down'))
    expect(server.output()).not.toContain(exitNodeToken)
  }, 120_000)
})

describe('spokelink server --endpoint-slices configuration', () => {
  test('without the downward-API variables it exits 2 naming each missing one', async () => {
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--spokes', '/nonexistent.yaml', '--endpoint-slices'], {
      env: { POD_NAME: 'exit-node-0', POD_IP: undefined, POD_NAMESPACE: undefined, POD_UID: undefined },
    })
    const exit = await server.waitForExit({ timeoutMs: 30_000 })
    expect(exit.code).toBe(2)
    expect(server.stderrLines).toContain('error: --endpoint-slices needs the downward-API variables POD_IP, POD_NAMESPACE, POD_UID (fieldRef metadata.name, status.podIP, metadata.namespace, metadata.uid)')
  })

  test('--check-config reports the pod and API server it would use and contacts nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spokelink-slices-check-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const spokesFile = join(dir, 'spokes.yaml')
    await writeFile(spokesFile, spokesYaml('orion-aws', createSpokeToken(), 19090))
    const kubeconfig = join(dir, 'kubeconfig')
    // Port 9 (discard) on loopback: nothing is contacted by --check-config, so nothing listens there.
    await writeFile(kubeconfig, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'c',
      clusters: [{ name: 'k', cluster: { server: 'https://127.0.0.1:9' } }],
      users: [{ name: 'u', user: { token: 'never-printed-token-value' } }],
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
    }))
    const env = { KUBECONFIG: kubeconfig, POD_NAME: 'hub-exit-node-0', POD_IP: '10.244.0.9', POD_NAMESPACE: 'monitoring', POD_UID: 'uid-1' }
    const check = runSpokelink(['server', '--check-config', '--spokes', spokesFile, '--endpoint-slices', '--service-prefix', 'spoke-'], { env })
    expect(await check.waitForExit({ timeoutMs: 30_000 })).toEqual({ code: 0, signal: null })
    const report = JSON.parse(check.stdoutLines.join('\n')) as { endpointSlices: unknown }
    expect(report.endpointSlices).toEqual({ namespace: 'monitoring', pod: 'hub-exit-node-0', podIp: '10.244.0.9', podUid: 'uid-1', servicePrefix: 'spoke-', apiServer: 'https://127.0.0.1:9' })
    expect(check.output()).not.toContain('never-printed-token-value')

    const bad = runSpokelink(['server', '--check-config', '--spokes', spokesFile, '--endpoint-slices'], { env: { ...env, POD_IP: 'not-an-ip' } })
    expect((await bad.waitForExit({ timeoutMs: 30_000 })).code).toBe(2)
    expect(bad.stderrLines).toContain('error: endpoint slices option pod.ip (POD_IP): expected an IPv4 or IPv6 address, got "not-an-ip"')
  })

  test('--service-prefix without --endpoint-slices is a usage error', async () => {
    const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--spokes', '/nonexistent.yaml', '--service-prefix', 'spoke-'])
    const exit = await server.waitForExit({ timeoutMs: 30_000 })
    expect(exit.code).toBe(2)
    expect(server.stderrLines).toContain('error: --service-prefix only applies with --endpoint-slices')
  })
})
