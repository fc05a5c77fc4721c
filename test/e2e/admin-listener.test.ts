/**
 * The operators' endpoints live on the admin listener only (issue 7, item 8), and a graceful
 * shutdown closes agents with 1001 which they log as a planned restart (item 9). In-process
 * exit-node and agent on real loopback sockets.
 */
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { beforeEach, describe, expect, onTestFailed, test } from 'vitest'
import type { Logger } from 'pino'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken, SpokesConfig } from '@spokelink/auth'
import { Registry } from 'prom-client'
import { createExitNode } from '@spokelink/exit-node'
import { createLogCapture, freePort } from '@spokelink/testkit'
import { listen, startAgent, startExitNode } from './in-process-tunnel.js'

const SPOKE = 'acme-bank-prod'

const logs = createLogCapture()

beforeEach(() => {
  logs.clear()
  onTestFailed(() => { process.stderr.write(`--- logs of the failed test ---\n${logs.text()}`) })
})

const testLogger = (name: string): Logger => logs.logger(name)

function spokesConfig (token: CreatedSpokeToken, dataPort: number): SpokesConfig {
  return parseSpokesConfig([
    'spokes:',
    `  - name: ${SPOKE}`,
    '    labels: {customer: acme-bank}',
    `    tokens: [{id: "${token.id}", sha256: "${token.sha256}"}]`,
    '    ports:',
    `      - {upstream: prometheus, listen: "0.0.0.0:${dataPort}"}`,
    '',
  ].join('\n'), 'test')
}

/** GET with an explicit Host header (fetch does not allow setting it). */
async function get (port: number, path: string, host = `127.0.0.1:${port}`): Promise<{ status: number, body: string }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false, signal: AbortSignal.timeout(5000) }, resolve).once('error', reject)
  })
  let body = ''
  for await (const chunk of res) body += String(chunk)
  return { status: res.statusCode ?? 0, body }
}

describe('admin listener', () => {
  test('the agents\' port answers only /connect, /healthz and /readyz; /metrics and /v1/sd are on the admin port', async () => {
    const dataPort = await freePort()
    const { port, adminPort } = await startExitNode(spokesConfig(createSpokeToken(), dataPort), testLogger('exit-node'))
    expect(adminPort).not.toBe(port)

    const control = Object.fromEntries(await Promise.all(['/metrics', '/v1/sd', '/v1/spokes', '/', '/healthz', '/readyz', '/connect'].map(async (path) => [path, (await get(port, path)).status] as const)))
    expect(control).toEqual({ '/metrics': 404, '/v1/sd': 404, '/v1/spokes': 404, '/': 404, '/healthz': 200, '/readyz': 200, '/connect': 426 })
    for (const path of ['/metrics', '/v1/sd']) expect((await get(port, path)).body).not.toContain('acme-bank')

    const admin = Object.fromEntries(await Promise.all(['/metrics', '/v1/sd', '/healthz', '/readyz', '/connect', '/'].map(async (path) => [path, (await get(adminPort, path)).status] as const)))
    expect(admin).toEqual({ '/metrics': 200, '/v1/sd': 200, '/healthz': 200, '/readyz': 200, '/connect': 404, '/': 200 })
    expect((await get(adminPort, '/metrics')).body).toMatch(/^# HELP spokelink_/m)

    // Tests and operators tell the two 'listening' lines apart by `listener`; the control one comes first.
    const listening = logs.entries().filter((l) => l.msg === 'listening')
    expect(listening.map((l) => [l.listener, l.port])).toEqual([['control', port], ['admin', adminPort]])
  })

  test('/v1/sd builds targets from configuration, never from the request\'s Host header', async () => {
    const dataPort = await freePort()
    const { adminPort } = await startExitNode(spokesConfig(createSpokeToken(), dataPort), testLogger('exit-node'), { sdHost: 'exit-node.monitoring.svc' })
    const spoofed = await get(adminPort, '/v1/sd', 'evil.example.com:6666')
    expect(spoofed.status).toBe(200)
    expect(spoofed.body).not.toContain('evil')
    expect(JSON.parse(spoofed.body)).toEqual([{
      targets: [`exit-node.monitoring.svc:${dataPort}`],
      labels: { __meta_spokelink_spoke: SPOKE, __meta_spokelink_upstream: 'prometheus', __meta_spokelink_connected: 'false', __meta_spokelink_label_customer: 'acme-bank' },
    }])

    // Without --sd-host, a wildcard data-plane port is addressed by the admin listen host.
    const { adminPort: defaultAdmin } = await startExitNode(spokesConfig(createSpokeToken(), await freePort()), testLogger('exit-node'))
    const groups = JSON.parse((await get(defaultAdmin, '/v1/sd', 'evil.example.com')).body) as Array<{ targets: string[] }>
    expect(groups.map((g) => g.targets)).toEqual([[expect.stringMatching(/^127\.0\.0\.1:\d+$/)]])
  })
})

describe('admin listener bind failure', () => {
  test('an admin port in use fails listen() with SLK_ERR_EXIT_LISTEN naming --admin-listen, and the control port is released', async () => {
    const busy = net.createServer()
    const busyPort = await listen(busy)
    const controlPort = await freePort()
    const exitNode = createExitNode({ host: '127.0.0.1', port: controlPort, adminPort: busyPort }, spokesConfig(createSpokeToken(), await freePort()), { logger: testLogger('exit-node'), registry: new Registry() })
    await expect(exitNode.listen()).rejects.toMatchObject({
      code: 'SLK_ERR_EXIT_LISTEN',
      message: `--admin-listen: cannot listen on 127.0.0.1:${busyPort}: the address is already in use`,
    })
    // Nothing stays bound: the control port can be taken again at once.
    const again = net.createServer()
    again.listen(controlPort, '127.0.0.1')
    await once(again, 'listening')
    again.close()
    await once(again, 'close')
  })
})

describe('graceful shutdown', () => {
  test('after the GoAway the exit-node closes each agent with 1001 and a reason; the agent logs a planned restart at info', async () => {
    const token = createSpokeToken()
    const { exitNode, url } = await startExitNode(spokesConfig(token, await freePort()), testLogger('exit-node'))
    const agent = await startAgent({ server: url, token: token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: 9 }] }, testLogger('agent'))
    const disconnected = once(agent, 'disconnected', { signal: AbortSignal.timeout(10_000) }) as Promise<[Error & { code?: string } | undefined]>
    await exitNode.close()
    const [err] = await disconnected
    expect(err).toMatchObject({ code: 'SLK_ERR_AGENT_SERVER_RESTARTING' })
    expect(err?.message).toContain('websocket close 1001 exit-node shutting down')
    const agentLines = logs.entries().filter((l) => l.name === 'agent' && (l.msg === 'exit-node restarting' || l.msg === 'disconnected'))
    expect(agentLines).toEqual([expect.objectContaining({ level: 30, msg: 'exit-node restarting', closeCode: 1001, code: 'SLK_ERR_AGENT_SERVER_RESTARTING' })])
  })
})
