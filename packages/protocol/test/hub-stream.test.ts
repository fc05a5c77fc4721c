import { createHash } from 'node:crypto'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { createManualClock, socketPair } from '@spokelink/testkit'
import type { ManualClock } from '@spokelink/testkit'
import {
  STREAM_STATUS,
  acceptDataStream,
  acceptHubStream,
  createMuxSession,
  encodeFramedJson,
  openDataStream,
  openHubStream,
  parseHubStreamHeader,
  parseWelcome,
} from '../src/index.js'
import type { MuxSession, MuxStream } from '../src/index.js'

// Hub streams are the data-stream handshake the other way round: the agent (mux client, odd ids) opens a stream
// naming a hub service, the exit-node (mux server) accepts it, answers the status byte and relays.

const TIMEOUT_MS = 10_000

async function pair (): Promise<[Socket, Socket]> {
  const ends = await socketPair({ allowHalfOpen: true })
  onTestFinished(() => { for (const end of ends) end.destroy() })
  return ends
}

/** The agent's mux (client) and the exit-node's (server) over real TCP, nothing armed. */
async function tunnel (): Promise<{ agent: MuxSession, exitNode: MuxSession, agentClock: ManualClock, exitClock: ManualClock }> {
  const [a, b] = await pair()
  const agentClock = createManualClock()
  const exitClock = createManualClock()
  const quiet = { keepaliveIntervalMs: 0, windowAutoTuning: false, streamOpenTimeoutMs: 0 }
  const agent = createMuxSession(a, 'client', quiet, { clock: agentClock })
  const exitNode = createMuxSession(b, 'server', quiet, { clock: exitClock })
  for (const mux of [agent, exitNode]) {
    const openStream = mux.openStream.bind(mux)
    mux.openStream = () => openStream().on('error', () => {})
    mux.on('stream', (stream: MuxStream) => { stream.on('error', () => {}) })
  }
  onTestFinished(() => { agent.abort(); exitNode.abort() })
  return { agent, exitNode, agentClock, exitClock }
}

async function nextStream (mux: MuxSession): Promise<MuxStream> {
  const [stream] = await once(mux, 'stream') as [MuxStream]
  return stream
}

function openHub (stream: MuxStream, client: Socket, clock: ManualClock, hubService = 'remote-write'): Promise<Error | undefined> {
  return openHubStream(stream, client, { hubService, statusTimeoutMs: TIMEOUT_MS, statusTimeoutError: () => Object.assign(new Error('late'), { code: 'TEST_LATE' }), clock })
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

async function readAll (socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

describe('hub streams: the agent opens, the exit-node accepts (in-process, real TCP)', () => {
  test('an agent-opened stream (odd id) carries 1 MiB each way byte-exact, after the exit-node\'s OK', async () => {
    const { agent, exitNode, agentClock, exitClock } = await tunnel()
    const [client, clientAtAgent] = await pair()
    const [hubAtExit, hub] = await pair()
    const request = Buffer.alloc(1024 * 1024, 7)
    const answer = Buffer.alloc(1024 * 1024, 9)
    client.end(request)
    const stream = agent.openStream()
    expect(stream.id % 2).toBe(1)
    const opened = openHub(stream, clientAtAgent, agentClock)
    const accepted = await acceptHubStream(await nextStream(exitNode), { headerTimeoutMs: TIMEOUT_MS, headerTimeoutError: () => new Error('late'), clock: exitClock })
    expect(accepted.hubService).toBe('remote-write')
    const relayed = accepted.relay(hubAtExit)
    const [atHub] = await Promise.all([readAll(hub), (async () => { hub.end(answer) })()])
    const atClient = await readAll(client)
    expect(sha256(atHub)).toBe(sha256(request))
    expect(sha256(atClient)).toBe(sha256(answer))
    await expect(opened).resolves.toBeUndefined()
    await expect(relayed).resolves.toBeUndefined()
  })

  test('a refusal reaches the agent as SLK_ERR_PROTO_HUB_SERVICE_REFUSED with the reason, and the local client is closed', async () => {
    const { agent, exitNode, agentClock, exitClock } = await tunnel()
    const [client, clientAtAgent] = await pair()
    client.write('POST /api/v1/write HTTP/1.1\r\n\r\n')
    const opened = openHub(agent.openStream(), clientAtAgent, agentClock)
    const accepted = await acceptHubStream(await nextStream(exitNode), { headerTimeoutMs: TIMEOUT_MS, headerTimeoutError: () => new Error('late'), clock: exitClock })
    accepted.refuse(STREAM_STATUS.NOT_ALLOWED, 'spoke orion-aws may not reach hub service "remote-write"')
    await expect(opened).resolves.toMatchObject({ code: 'SLK_ERR_PROTO_HUB_SERVICE_REFUSED', message: 'exit-node refused the hub stream: spoke orion-aws may not reach hub service "remote-write"' })
    expect(clientAtAgent.destroyed).toBe(true)
  })

  test('the two headers are not interchangeable: a data-stream acceptor refuses a hub header and the reverse', async () => {
    const { agent, exitNode, agentClock, exitClock } = await tunnel()
    const [, clientAtAgent] = await pair()
    void openHub(agent.openStream(), clientAtAgent, agentClock)
    await expect(acceptDataStream(await nextStream(exitNode), { headerTimeoutMs: TIMEOUT_MS, headerTimeoutError: () => new Error('late'), clock: exitClock }))
      .rejects.toMatchObject({ code: 'SLK_ERR_PROTO_HEADER_INVALID' })
    const [, clientAtExit] = await pair()
    void openDataStream(exitNode.openStream(), clientAtExit, { upstream: 'prometheus', statusTimeoutMs: TIMEOUT_MS, statusTimeoutError: () => new Error('late'), clock: exitClock })
    await expect(acceptHubStream(await nextStream(agent), { headerTimeoutMs: TIMEOUT_MS, headerTimeoutError: () => new Error('late'), clock: agentClock }))
      .rejects.toMatchObject({ code: 'SLK_ERR_PROTO_HEADER_INVALID' })
  })

  test('a header naming something that is not a service name is SLK_ERR_PROTO_HEADER_INVALID', () => {
    for (const bad of [{ hubService: '10.0.0.1:9090' }, { hubService: 'a/b' }, { hubService: 1 }, {}, [], null, { upstream: 'remote-write' }]) {
      expect(() => parseHubStreamHeader(bad)).toThrow(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }))
    }
    expect(parseHubStreamHeader({ hubService: 'remote-write' })).toEqual({ hubService: 'remote-write' })
    expect(encodeFramedJson({ hubService: 'remote-write' }).subarray(4).toString()).toBe('{"hubService":"remote-write"}')
  })
})

describe('the welcome advertises hub services (v1-compatible)', () => {
  test('a welcome without hubServices (an older exit-node) parses without it; with it, the names come through', () => {
    expect(parseWelcome({ ok: true, spoke: 's', ports: [] })).not.toHaveProperty('hubServices')
    expect(parseWelcome({ ok: true, spoke: 's', ports: [], hubServices: [] })).toMatchObject({ hubServices: [] })
    expect(parseWelcome({ ok: true, spoke: 's', ports: [], hubServices: ['remote-write'] })).toMatchObject({ hubServices: ['remote-write'] })
  })

  test('a bad hubServices list is SLK_ERR_PROTO_HEADER_INVALID', () => {
    for (const bad of ['remote-write', [1], ['host:9090'], Array.from({ length: 17 }, (_, i) => `s${i}`)]) {
      expect(() => parseWelcome({ ok: true, spoke: 's', ports: [], hubServices: bad })).toThrow(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }))
    }
  })
})
