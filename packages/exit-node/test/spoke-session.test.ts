import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { expect, onTestFinished, test } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import {
  CLOSE_CODE,
  PROTOCOL_VERSION,
  createMuxSession,
  createWebSocketDuplex,
  encodeFramedJson,
  parseWelcome,
  readFramedJson,
} from '@spokelink/protocol'
import type { GrantedPort } from '@spokelink/protocol'
import type { PortConfig } from '@spokelink/auth'
import { SpokeSession } from '../src/spoke-session.js'
import type { SpokeSessionDeps } from '../src/spoke-session.js'

const CREDENTIAL = { spoke: 'acme', tokenId: 'tok1', tokenSha256: 'a'.repeat(64) }
const GRANTED: GrantedPort[] = [{ upstream: 'prometheus', host: '127.0.0.1', port: 9999 }]

/** A real WebSocket pair on 127.0.0.1: the server side becomes a SpokeSession, the client side is the agent's. */
async function sessionPair (helloTimeoutMs: number): Promise<{ session: SpokeSession, agent: WebSocket, registered: SpokeSession[], attached: PortConfig[][] }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  onTestFinished(() => { for (const ws of wss.clients) ws.terminate(); wss.close() })
  await once(wss, 'listening')
  const registered: SpokeSession[] = []
  const attached: PortConfig[][] = []
  const deps: SpokeSessionDeps = {
    logger: pino({ level: 'silent' }),
    admit: () => ({ ok: true, wanted: [], missing: [], hubServices: ['remote-write'] }),
    dataPlane: {
      attach: async (_session, ports) => { attached.push(ports); return GRANTED },
      detach: () => {},
    },
    register: (session) => { registered.push(session) },
    serveAgentStream: (_session, stream) => { stream.destroy() },
  }
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>
  const agent = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false })
  agent.on('error', () => {})
  onTestFinished(() => { agent.terminate() })
  const [ws] = await accepted
  const session = new SpokeSession(ws, CREDENTIAL, '127.0.0.1', { mux: { keepaliveIntervalMs: 0 }, keepaliveIntervalMs: 60_000, helloTimeoutMs, maxLogFieldChars: 128 }, deps)
  onTestFinished(() => { session.mux.abort() })
  await once(agent, 'open')
  return { session, agent, registered, attached }
}

test('an accepted hello binds the ports, registers the session, welcomes the agent and emits ready', async () => {
  const { session, agent, registered } = await sessionPair(60_000)
  const ready = once(session, 'ready')
  const mux = createMuxSession(createWebSocketDuplex(agent), 'client', { keepaliveIntervalMs: 0 })
  mux.on('error', () => {})
  const control = mux.openStream()
  control.on('error', () => {})
  control.write(encodeFramedJson({ version: PROTOCOL_VERSION, agent: 'unit', agentVersion: '1.2.3', upstreams: ['prometheus'], labels: { region: 'eu' } }))
  expect(parseWelcome(await readFramedJson(control))).toEqual({ ok: true, spoke: 'acme', ports: GRANTED, hubServices: ['remote-write'] })
  await ready
  expect(registered).toEqual([session])
  expect({ agent: session.agent, agentVersion: session.agentVersion, labels: session.labels, ports: session.ports }).toEqual({ agent: 'unit', agentVersion: '1.2.3', labels: { region: 'eu' }, ports: GRANTED })
  session.streamOpened()
  session.streamOpened()
  session.streamClosed()
  expect(session.activeStreams).toBe(1)
})

test('an agent that sends no hello in time is closed with CLOSE_CODE.HELLO_FAILED and the session closes unready', async () => {
  const { session, agent, registered } = await sessionPair(50)
  const sessionClosed = once(session, 'close') as Promise<[Error | undefined, boolean]>
  const [code, reason] = await (once(agent, 'close') as Promise<[number, Buffer]>)
  expect(code).toBe(CLOSE_CODE.HELLO_FAILED)
  expect(reason.toString()).toBe('no hello in time')
  const [, ready] = await sessionClosed
  expect(ready).toBe(false)
  expect(registered).toEqual([])
})

test('disconnect closes the WebSocket with CLOSE_CODE.REVOKED and the reason by default, or the code given', async () => {
  const revoked = await sessionPair(60_000)
  const closed = once(revoked.agent, 'close') as Promise<[number, Buffer]>
  revoked.session.disconnect('token revoked')
  const [code, reason] = await closed
  expect(code).toBe(CLOSE_CODE.REVOKED)
  expect(reason.toString()).toBe('token revoked')

  const reconfigured = await sessionPair(60_000)
  const closedToo = once(reconfigured.agent, 'close') as Promise<[number, Buffer]>
  reconfigured.session.disconnect('ports changed', CLOSE_CODE.RECONFIGURED)
  const [codeToo, reasonToo] = await closedToo
  expect(codeToo).toBe(CLOSE_CODE.RECONFIGURED)
  expect(reasonToo.toString()).toBe('ports changed')
})
