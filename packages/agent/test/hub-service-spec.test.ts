import { describe, expect, test } from 'vitest'
import { parseHubServiceSpec, validateAgentOptions } from '../src/index.js'

describe('--hub-service NAME=HOST:PORT', () => {
  test('parses a name and a listen address; port 0 picks one; IPv6 in brackets', () => {
    expect(parseHubServiceSpec('remote-write=127.0.0.1:9201')).toEqual({ name: 'remote-write', host: '127.0.0.1', port: 9201 })
    expect(parseHubServiceSpec('rw=0.0.0.0:0')).toEqual({ name: 'rw', host: '0.0.0.0', port: 0 })
    expect(parseHubServiceSpec('rw=[::1]:9201')).toEqual({ name: 'rw', host: '::1', port: 9201 })
  })

  test.each([
    ['127.0.0.1:9201', '--hub-service "127.0.0.1:9201": expected NAME=HOST:PORT with NAME like "remote-write" (lowercase letters, digits, - and _)'],
    ['Remote=127.0.0.1:9201', '--hub-service "Remote=127.0.0.1:9201": expected NAME=HOST:PORT with NAME like "remote-write" (lowercase letters, digits, - and _)'],
    ['rw=127.0.0.1', '--hub-service "rw=127.0.0.1": expected NAME=HOST:PORT to listen on, with a port from 0 to 65535'],
    ['rw=127.0.0.1:70000', '--hub-service "rw=127.0.0.1:70000": expected NAME=HOST:PORT to listen on, with a port from 0 to 65535'],
  ])('%s → SLK_ERR_AGENT_INVALID_OPTION with one line', (spec, message) => {
    expect(() => parseHubServiceSpec(spec)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message }))
  })

  test('a name given twice is refused at validation', () => {
    const base = { server: 'ws://127.0.0.1:1/connect', token: 'slk_abcd1234_x', upstreams: [{ name: 'p', host: '127.0.0.1', port: 1 }] }
    expect(() => validateAgentOptions({ ...base, hubServices: [parseHubServiceSpec('rw=127.0.0.1:1'), parseHubServiceSpec('rw=127.0.0.1:2')] }))
      .toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION', message: '--hub-service: "rw" is given twice' }))
  })
})
