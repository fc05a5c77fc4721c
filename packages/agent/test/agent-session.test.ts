import { once } from 'node:events'
import http from 'node:http'
import pino from 'pino'
import { Registry } from 'prom-client'
import { describe, expect, onTestFinished, test } from 'vitest'
import { WebSocketServer } from 'ws'
import type { WebSocket } from 'ws'
import {
  CLOSE_CODE,
  PROTOCOL_NAME,
  createMuxSession,
  createWebSocketDuplex,
  encodeFramedJson,
  openDataStream,
  parseHello,
  readFramedJson,
} from '@spokelink/protocol'
import type { MuxSession, MuxStream } from '@spokelink/protocol'
import { listenLoopback, socketPair } from '@spokelink/testkit'
import { createAgent } from '../src/index.js'
import type { Agent } from '../src/index.js'

const TOKEN = 'slk_abcd1234_' + 'A'.repeat(43)

interface HubSession { ws: WebSocket, mux: MuxSession, hello: ReturnType<typeof parseHello> }

/**
 * The exit-node's side of the wire, built from `@spokelink/protocol` alone (a real WebSocket server and
 * a real mux, no exit-node package): each connection's hello is answered with a welcome.
 */
async function startHub (): Promise<{ url: string, sessions: AsyncGenerator<HubSession> }> {
  const server = http.createServer()
  const wss = new WebSocketServer({ server, path: '/connect', perMessageDeflate: false, handleProtocols: (protocols) => protocols.has(PROTOCOL_NAME) ? PROTOCOL_NAME : false })
  const port = await listenLoopback(server)
  onTestFinished(async () => {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
    server.close()
    await once(server, 'close')
  })
  async function * sessions (): AsyncGenerator<HubSession> {
    for (;;) {
      const [ws] = await once(wss, 'connection') as [WebSocket]
      const mux = createMuxSession(createWebSocketDuplex(ws), 'server', { keepaliveIntervalMs: 0 })
      mux.on('error', () => {})
      const [control] = await once(mux, 'stream') as [MuxStream]
      control.on('error', () => {})
      const hello = parseHello(await readFramedJson(control))
      control.write(encodeFramedJson({ ok: true, spoke: 'acme', ports: [] }))
      yield { ws, mux, hello }
    }
  }
  return { url: `ws://127.0.0.1:${port}/connect`, sessions: sessions() }
}

function startAgent (url: string, upstreamPort = 1): Agent {
  const agent = createAgent({
    server: url,
    token: TOKEN,
    agentName: 'unit',
    upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstreamPort }],
    // Reconnect at once, so a test sees the next session without waiting out a backoff.
    backoff: { initialDelayMs: 1, maxDelayMs: 1 },
  }, { logger: pino({ level: 'silent' }), registry: new Registry() })
  onTestFinished(async () => { await agent.close({ graceMs: 0 }) })
  agent.start()
  return agent
}

async function nextSession (sessions: AsyncGenerator<HubSession>): Promise<HubSession> {
  const { value, done } = await sessions.next()
  if (done === true) throw new Error('hub stopped')
  return value
}

describe('Agent session lifecycle against a protocol-only hub', () => {
  test('hello names the agent and its upstreams; connected, then each close code maps to its error code', async () => {
    const hub = await startHub()
    const agent = startAgent(hub.url)
    const connected = once(agent, 'connected')
    const first = await nextSession(hub.sessions)
    expect(first.hello).toMatchObject({ agent: 'unit', upstreams: ['prometheus'] })
    expect(await connected).toEqual([{ spoke: 'acme', ports: [] }])
    expect(agent.state).toBe('connected')

    const cases: Array<[number, string, object]> = [
      [CLOSE_CODE.REVOKED, 'token revoked', { code: 'SLK_ERR_AGENT_FORBIDDEN', message: 'exit-node closed the session: token revoked' }],
      [CLOSE_CODE.GOING_AWAY, 'exit-node shutting down', { code: 'SLK_ERR_AGENT_SERVER_RESTARTING' }],
      // A reason text that looks like another code must not be read as one: the code decides.
      [CLOSE_CODE.SESSION_LIMIT, '4403 token revoked', { code: 'SLK_ERR_AGENT_CONNECT' }],
      [CLOSE_CODE.HELLO_FAILED, 'no hello in time', { code: 'SLK_ERR_AGENT_CONNECT' }],
    ]
    let session = first
    for (const [closeCode, reason, expected] of cases) {
      const disconnected = once(agent, 'disconnected') as Promise<[Error]>
      session.ws.close(closeCode, reason)
      const [err] = await disconnected
      expect(err, `close ${closeCode}`).toMatchObject(expected)
      // Close the next session only once the agent has read its welcome, so the close is what ends it.
      const reconnected = once(agent, 'connected')
      session = await nextSession(hub.sessions)
      await reconnected
    }
  })

  test('a data stream for an upstream the agent does not offer is refused with the reason; an offered one is relayed byte-exact', async () => {
    const [upstreamClient, upstreamServer] = await socketPair({ allowHalfOpen: true })
    onTestFinished(() => { upstreamClient.destroy(); upstreamServer.destroy() })
    const upstream = http.createServer((req, res) => { res.end(`seen ${req.url ?? ''}`) })
    const upstreamPort = await listenLoopback(upstream)
    onTestFinished(() => { upstream.close() })
    const hub = await startHub()
    startAgent(hub.url, upstreamPort)
    const { mux } = await nextSession(hub.sessions)

    const refused = await openDataStream(mux.openStream().on('error', () => {}), upstreamClient, {
      upstream: 'alertmanager', statusTimeoutMs: 10_000, statusTimeoutError: () => new Error('late'),
    })
    expect(refused).toMatchObject({ code: 'SLK_ERR_PROTO_UPSTREAM_REFUSED', message: 'agent refused the stream: upstream "alertmanager" is not offered by this agent' })

    const [client, clientAtHub] = await socketPair({ allowHalfOpen: true })
    onTestFinished(() => { client.destroy(); clientAtHub.destroy() })
    const relayed = openDataStream(mux.openStream(), clientAtHub, { upstream: 'prometheus', statusTimeoutMs: 10_000, statusTimeoutError: () => new Error('late') })
    client.end('GET /federate HTTP/1.0\r\n\r\n')
    const answer: Buffer[] = []
    for await (const chunk of client) answer.push(chunk as Buffer)
    expect(Buffer.concat(answer).toString()).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nseen \/federate$/)
    expect(await relayed).toBeUndefined()
  })
})
