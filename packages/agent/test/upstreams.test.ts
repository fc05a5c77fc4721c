import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { describe, expect, test } from 'vitest'
import { checkServerUrl, dialUpstream, parseUpstreamSpec, validateAgentOptions } from '@spokelink/agent'
import { ReadBufferPool } from '@spokelink/protocol'

describe('parseUpstreamSpec', () => {
  test('NAME=HOST:PORT, IPv6 in brackets', () => {
    expect(parseUpstreamSpec('prometheus=prometheus-server:9090')).toEqual({ name: 'prometheus', host: 'prometheus-server', port: 9090 })
    expect(parseUpstreamSpec('am=[::1]:9093')).toEqual({ name: 'am', host: '::1', port: 9093 })
  })

  test.each(['prometheus', '=h:1', 'Prom=h:1', 'p=h', 'p=h:0', 'p=h:70000', 'p=:9090'])('%s is refused with a line naming the spec', (spec) => {
    expect(() => parseUpstreamSpec(spec)).toThrowError(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message: expect.stringContaining(spec) as string }) as Error)
  })
})

describe('checkServerUrl', () => {
  test('plain ws only to loopback unless insecure', () => {
    expect(checkServerUrl('ws://127.0.0.1:8123/connect', false).host).toBe('127.0.0.1:8123')
    expect(() => checkServerUrl('ws://hub.example.com/connect', false)).toThrowError(expect.objectContaining({ code: 'SLK_ERR_AGENT_INSECURE' }) as Error)
    expect(checkServerUrl('ws://hub.example.com/connect', true).hostname).toBe('hub.example.com')
  })

  test('credentials in the URL are refused without echoing them', () => {
    expect(() => checkServerUrl('wss://user:hunter2@hub.example.com/connect', false)).toThrowError(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION' }) as Error)
    try {
      checkServerUrl('wss://hub.example.com/connect?token=slk_abc_secret', false)
    } catch (err) {
      expect(String(err)).not.toContain('secret')
    }
  })

  test('a bare host gets the /connect path', () => {
    expect(checkServerUrl('wss://hub.example.com', false).pathname).toBe('/connect')
  })
})

describe('dialUpstream', () => {
  test('connects to a real listener and fails fast on a closed port', async () => {
    const server = net.createServer((socket) => { socket.end('hi') })
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    const { port } = server.address() as AddressInfo
    const socket = await dialUpstream({ name: 'x', host: '127.0.0.1', port }, { timeoutMs: 2000 })
    const chunks: Buffer[] = []
    for await (const chunk of socket) chunks.push(chunk as Buffer)
    expect(Buffer.concat(chunks).toString()).toBe('hi')
    server.close()
    await expect(dialUpstream({ name: 'x', host: '127.0.0.1', port }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  test('with a read buffer pool the socket reads into pool buffers: the bytes arrive, each read at most readBufferBytes', async () => {
    const body = Buffer.alloc(20_000, 'x')
    const server = net.createServer((socket) => { socket.end(body) })
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    const { port } = server.address() as AddressInfo
    const pool = new ReadBufferPool({ readBufferBytes: 4096, maxPooledReadBuffers: 1 })
    const socket = await dialUpstream({ name: 'x', host: '127.0.0.1', port }, { timeoutMs: 2000, readBufferPool: pool })
    const chunks: Buffer[] = []
    for await (const chunk of socket) chunks.push(chunk as Buffer)
    server.close()
    expect(Buffer.concat(chunks).equals(body)).toBe(true)
    expect(Math.max(...chunks.map((c) => c.length))).toBe(4096)
    expect(pool.allocatedCount).toBe(chunks.length + 1)
  })
})

describe('agent option readBuffers', () => {
  const base = { server: 'ws://127.0.0.1:1/connect', token: 'slk_abcd1234_x', upstreams: [{ name: 'p', host: '127.0.0.1', port: 1 }] }

  test('0 free buffers is allowed (every read allocates); a 0-byte buffer or a fraction is refused with the option named', () => {
    expect(validateAgentOptions({ ...base, readBuffers: { maxPooledReadBuffers: 0, readBufferBytes: 1 } }).readBuffers).toEqual({ maxPooledReadBuffers: 0, readBufferBytes: 1 })
    expect(() => validateAgentOptions({ ...base, readBuffers: { readBufferBytes: 0 } }))
      .toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message: 'agent option readBuffers.readBufferBytes: expected an integer ≥ 1, got 0' }))
    expect(() => validateAgentOptions({ ...base, readBuffers: { maxPooledReadBuffers: -1 } }))
      .toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message: 'agent option readBuffers.maxPooledReadBuffers: expected an integer ≥ 0, got -1' }))
    expect(() => validateAgentOptions({ ...base, readBuffers: { maxPooledReadBuffers: 1.5 } }))
      .toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION' }))
  })
})
