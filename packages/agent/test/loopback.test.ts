/**
 * Plain ws:// is allowed without `insecure` only to loopback: IP literals in 127.0.0.0/8 or ::1, and `localhost` only
 * when every address it resolves to is loopback. Names that merely look like loopback are remote.
 */
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import type { LookupAddress } from 'node:dns'
import { describe, expect, onTestFinished, test } from 'vitest'
import { checkServerUrl, connectExitNode, createLoopbackOnlyLookup, isLoopbackAddress } from '@spokelink/agent'
import { listenLoopback } from '@spokelink/testkit'

const TOKEN = 'slk_8f3k2a_Yb2vQm9rX4tL7wP1sZ6nC3dF0hJ5kE8u'

describe('checkServerUrl: which ws:// hosts count as loopback', () => {
  test.each([
    'ws://127.attacker.example/connect',
    'ws://127.0.0.1.nip.io/connect',
    'ws://127.0.0.1.attacker.example:8080/connect',
    'ws://[::2]/connect',
    'ws://128.0.0.1/connect',
    'ws://localhost.attacker.example/connect',
    'ws://10.0.0.1/connect',
  ])('%s is refused without --insecure', (url) => {
    expect(() => checkServerUrl(url, false)).toThrowError(expect.objectContaining({ code: 'SLK_ERR_AGENT_INSECURE' }) as Error)
    expect(checkServerUrl(url, true).protocol).toBe('ws:')
  })

  test.each([
    ['ws://127.0.0.1:8123/connect', '127.0.0.1'],
    ['ws://127.5.5.5/connect', '127.5.5.5'],
    ['ws://[::1]:8123/connect', '[::1]'],
    ['ws://[0:0:0:0:0:0:0:1]/connect', '[::1]'],
    ['ws://127.1/connect', '127.0.0.1'],
    ['ws://[::ffff:127.0.0.1]/connect', '[::ffff:7f00:1]'],
    ['ws://localhost:8123/connect', 'localhost'],
  ])('%s is allowed', (url, hostname) => {
    expect(checkServerUrl(url, false).hostname).toBe(hostname)
  })

  test('isLoopbackAddress judges IP literals only', () => {
    expect(['127.0.0.1', '127.255.255.254', '::1', '[::1]', '::ffff:127.0.0.2'].map(isLoopbackAddress)).toEqual([true, true, true, true, true])
    expect(['127.attacker.example', 'localhost', '::2', '0.0.0.0', '::', '128.0.0.1', ''].map(isLoopbackAddress)).toEqual([false, false, false, false, false, false, false])
  })
})

describe('localhost must resolve only to loopback', () => {
  /** A TCP server on 127.0.0.1:0 that counts the connections it accepts. */
  async function countingServer (): Promise<{ port: number, accepted: () => number }> {
    let accepted = 0
    const server = net.createServer((socket) => { accepted++; socket.destroy() })
    const port = await listenLoopback(server)
    onTestFinished(async () => { server.close(); await once(server, 'close') })
    return { port, accepted: () => accepted }
  }

  function resolvingTo (...addresses: string[]) {
    const answer: LookupAddress[] = addresses.map((address) => ({ address, family: net.isIP(address) }))
    return createLoopbackOnlyLookup((_hostname, _options, callback) => { callback(null, answer) })
  }

  test('a name that resolves to any non-loopback address is never connected to', async () => {
    const { port, accepted } = await countingServer()
    for (const lookup of [resolvingTo('127.0.0.1', '10.0.0.7'), resolvingTo('10.0.0.7'), resolvingTo()]) {
      for (const autoSelectFamily of [true, false]) {
        const socket = net.connect({ host: 'localhost', port, lookup, autoSelectFamily })
        const [err] = await once(socket, 'error', { signal: AbortSignal.timeout(5000) }) as [NodeJS.ErrnoException]
        socket.destroy()
        expect(err.code).toBe('SLK_ERR_AGENT_INSECURE')
      }
    }
    expect(accepted()).toBe(0)
  })

  test('a name that resolves only to loopback is connected to', async () => {
    const { port, accepted } = await countingServer()
    const socket = net.connect({ host: 'localhost', port, lookup: resolvingTo('127.0.0.1', '::1'), autoSelectFamily: false })
    await once(socket, 'connect')
    socket.destroy()
    await expect.poll(accepted).toBe(1)
  })

  test('connectExitNode to ws://localhost refuses, sending nothing, when localhost resolves off the machine', async () => {
    const { port, accepted } = await countingServer()
    const resolveAll = (_hostname: string, _options: unknown, callback: (err: null, addresses: LookupAddress[]) => void): void => {
      callback(null, [{ address: '127.0.0.1', family: 4 }, { address: '10.0.0.7', family: 4 }])
    }
    await expect(connectExitNode({ url: `ws://localhost:${port}/connect`, token: TOKEN, insecure: false, handshakeTimeoutMs: 5000, maxMessageBytes: 1 << 20, resolveAll }))
      .rejects.toMatchObject({ code: 'SLK_ERR_AGENT_INSECURE', message: expect.stringContaining('10.0.0.7') as string })
    expect(accepted()).toBe(0)
  })

  test('connectExitNode to ws://localhost reaches a server on 127.0.0.1 (this host maps localhost to loopback)', async () => {
    const seen: string[] = []
    const server = http.createServer()
    server.on('upgrade', (req, socket) => {
      seen.push(req.url ?? '')
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope')
    })
    const port = await listenLoopback(server)
    onTestFinished(async () => { server.close(); await once(server, 'close') })
    await expect(connectExitNode({ url: `ws://localhost:${port}/connect`, token: TOKEN, insecure: false, handshakeTimeoutMs: 5000, maxMessageBytes: 1 << 20 }))
      .rejects.toMatchObject({ code: 'SLK_ERR_AGENT_FORBIDDEN' })
    expect(seen).toEqual(['/connect'])
  })
})
