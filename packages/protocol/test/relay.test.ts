import { once } from 'node:events'
import type net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { describe, expect, onTestFinished, test } from 'vitest'
import { deterministicSource, expectedSha256, hashStream, socketPair, waitFor } from '@spokelink/testkit'
import { ProtocolError, readExactly, relay } from '../src/index.js'

const MiB = 1024 * 1024

/**
 * client ⇄ [a | relay | b] ⇄ server: two real TCP connections whose inner ends are relayed.
 * Every end allows half-open, as the data plane's sockets do.
 */
async function relayedPair (): Promise<{ client: net.Socket, a: net.Socket, b: net.Socket, server: net.Socket }> {
  const [client, a] = await socketPair({ allowHalfOpen: true })
  const [b, server] = await socketPair({ allowHalfOpen: true })
  onTestFinished(() => { for (const s of [client, a, b, server]) s.destroy() })
  return { client, a, b, server }
}

describe('relay', () => {
  test('carries 16 MiB each way at once sha256-exact, passes each half-close on, and resolves clean once both sides closed', async () => {
    const { client, a, b, server } = await relayedPair()
    const done = relay(a, b)
    // Each end still writes after its readable side ended: read without destroying at the end.
    const down = hashStream(client.iterator({ destroyOnReturn: false }))
    const up = hashStream(server.iterator({ destroyOnReturn: false }))
    // pipe(), not pipeline(): pipeline would destroy each socket once its writing is done, while it still reads.
    deterministicSource(16 * MiB, 1).pipe(client)
    deterministicSource(16 * MiB, 2).pipe(server)
    expect(await up).toEqual({ sha256: expectedSha256(16 * MiB, 1), bytes: 16 * MiB })
    expect(await down).toEqual({ sha256: expectedSha256(16 * MiB, 2), bytes: 16 * MiB })
    expect(await done).toBeUndefined()
    expect(a.destroyed && b.destroyed).toBe(true)
  })

  test('after one side half-closes, the other direction keeps flowing until it ends too', async () => {
    const { client, a, b, server } = await relayedPair()
    const done = relay(a, b)
    client.end('request')
    let requestBytes = 0
    server.on('data', (chunk: Buffer) => { requestBytes += chunk.length })
    await once(server, 'end')
    expect(requestBytes).toBe('request'.length)
    const received = hashStream(client)
    server.end(Buffer.alloc(MiB, 7))
    expect((await received).bytes).toBe(MiB)
    expect(await done).toBeUndefined()
  })

  test('a reset on one side destroys the other and resolves with the error', async () => {
    const { client, a, b, server } = await relayedPair()
    const done = relay(a, b)
    client.write('hello')
    await once(server, 'data')
    client.resume()
    server.resetAndDestroy()
    const failure = await done
    expect(failure).toBeInstanceOf(Error)
    expect(a.destroyed).toBe(true)
    await once(client, 'end')
  })

  test('a side already closed when the relay starts fails it at once instead of hanging', async () => {
    const { a, b } = await relayedPair()
    b.destroy()
    await once(b, 'close')
    const failure = await relay(a, b)
    expect(failure).toMatchObject({ code: 'SLK_ERR_PROTO_CLOSED' })
    expect(a.destroyed).toBe(true)
  })

  test('beforeBToA reads a preamble off b while a → b already flows; only what follows the preamble reaches a', async () => {
    const { client, a, b, server } = await relayedPair()
    const done = relay(a, b, {
      beforeBToA: (done) => {
        readExactly(b, 1).then(([status]) => { done(status === 0 ? undefined : new Error('refused')) }, done)
      },
    })
    client.write('request')
    const [request] = await once(server, 'data') as [Buffer]
    expect(request.toString()).toBe('request')
    server.end(Buffer.concat([Buffer.of(0), Buffer.from('response')]))
    client.end()
    const answer = await hashStream(client)
    expect(answer.bytes).toBe('response'.length)
    expect(await done).toBeUndefined()
  })

  test('a failing beforeBToA fails the relay with its error and closes both sides', async () => {
    const { client, a, b, server } = await relayedPair()
    const refused = new ProtocolError('SLK_ERR_PROTO_UPSTREAM_REFUSED', 'agent refused the stream: test')
    const done = relay(a, b, { beforeBToA: (finish) => { b.once('readable', () => { finish(refused) }) } })
    client.resume()
    server.write(Buffer.of(1))
    expect(await done).toBe(refused)
    await once(client, 'end')
  })

  test('a reader that stops pauses the writer: the relay buffers at most one chunk above the high-water mark', async () => {
    const { client, a, b, server } = await relayedPair()
    void relay(a, b)
    server.pause()
    let peak = 0
    a.on('data', () => { peak = Math.max(peak, b.writableLength) })
    const writer = pipeline(deterministicSource(64 * MiB, 3), client)
    writer.catch(() => { /* the test destroys the sockets when it ends */ })
    await waitFor(() => a.isPaused() && b.writableNeedDrain, { what: 'the relay to pause its reader' })
    const pausedAt = a.bytesRead
    await waitFor(() => client.writableNeedDrain, { what: 'the client to be blocked' })
    expect(a.bytesRead).toBe(pausedAt)
    expect(peak).toBeLessThanOrEqual(b.writableHighWaterMark + 64 * 1024)
    const all = hashStream(server)
    server.resume()
    await writer
    expect(await all).toEqual({ sha256: expectedSha256(64 * MiB, 3), bytes: 64 * MiB })
  })
})
