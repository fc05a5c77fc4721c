import { once } from 'node:events'
import pino from 'pino'
import { Registry } from 'prom-client'
import { describe, expect, onTestFinished, test } from 'vitest'
import { WebSocket } from 'ws'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken } from '@spokelink/auth'
import {
  CLOSE_CODE,
  PROTOCOL_NAME,
  PROTOCOL_VERSION,
  createMuxSession,
  createWebSocketDuplex,
  encodeFramedJson,
  parseWelcome,
  readFramedJson,
} from '@spokelink/protocol'
import type { MuxSession, MuxStream } from '@spokelink/protocol'
import { freePort } from '@spokelink/testkit'
import { createExitNode } from '../src/index.js'
import type { ExitNode } from '../src/index.js'

function spokes (token: CreatedSpokeToken, dataPort: number, revoked = false): ReturnType<typeof parseSpokesConfig> {
  return parseSpokesConfig([
    'spokes:',
    `  - {name: acme, tokens: [{id: ${token.id}, sha256: "${token.sha256}"${revoked ? ', revoked: true' : ''}}], ports: [{upstream: prometheus, listen: "127.0.0.1:${dataPort}"}]}`,
  ].join('\n'), 'spokes.yaml')
}

async function startExitNode (token: CreatedSpokeToken, dataPort: number): Promise<{ exitNode: ExitNode, url: string }> {
  const exitNode = createExitNode({ host: '127.0.0.1', port: 0, adminPort: 0, shutdownGraceMs: 0 }, spokes(token, dataPort), { logger: pino({ level: 'silent' }), registry: new Registry() })
  onTestFinished(async () => { await exitNode.close() })
  const { port } = await exitNode.listen()
  return { exitNode, url: `ws://127.0.0.1:${port}/connect` }
}

/** The agent's side of the wire from `@spokelink/protocol` alone: WebSocket, mux, hello; resolves with the welcome. */
async function connectAgent (url: string, token: string, upstreams = ['prometheus']): Promise<{ ws: WebSocket, mux: MuxSession, welcome: ReturnType<typeof parseWelcome> }> {
  const ws = new WebSocket(url, [PROTOCOL_NAME], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false })
  onTestFinished(() => { ws.terminate() })
  await once(ws, 'open')
  const mux = createMuxSession(createWebSocketDuplex(ws), 'client', { keepaliveIntervalMs: 0 })
  mux.on('error', () => {})
  const control: MuxStream = mux.openStream()
  control.on('error', () => {})
  control.write(encodeFramedJson({ version: PROTOCOL_VERSION, agent: 'unit', upstreams, labels: {} }))
  return { ws, mux, welcome: parseWelcome(await readFramedJson(control)) }
}

describe('ExitNode session lifecycle against a protocol-only agent', () => {
  test('a hello is welcomed with the bound port and registers the session; a revocation closes it with CLOSE_CODE.REVOKED and its reason', async () => {
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { exitNode, url } = await startExitNode(token, dataPort)
    const { ws, welcome } = await connectAgent(url, token.token)
    expect(welcome).toEqual({ ok: true, spoke: 'acme', ports: [{ upstream: 'prometheus', host: '127.0.0.1', port: dataPort }], hubServices: [] })
    expect(exitNode.sessions.all().map((session) => session.spoke)).toEqual(['acme'])

    const closed = once(ws, 'close') as Promise<[number, Buffer]>
    exitNode.updateSpokes(spokes(token, dataPort, true))
    const [code, reason] = await closed
    expect(code).toBe(CLOSE_CODE.REVOKED)
    expect(reason.toString()).toBe('token revoked')
    expect(exitNode.sessions.all()).toEqual([])
  })

  test('an agent offering none of its spoke\'s upstreams is welcomed with no ports; close() ends its session with CLOSE_CODE.GOING_AWAY', async () => {
    const token = createSpokeToken()
    const { exitNode, url } = await startExitNode(token, await freePort())
    const { ws, welcome } = await connectAgent(url, token.token, ['alertmanager'])
    expect(welcome).toEqual({ ok: true, spoke: 'acme', ports: [], hubServices: [] })
    const closed = once(ws, 'close') as Promise<[number, Buffer]>
    await exitNode.close()
    const [code] = await closed
    expect(code).toBe(CLOSE_CODE.GOING_AWAY)
  })
})
