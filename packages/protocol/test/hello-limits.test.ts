import { describe, expect, test } from 'vitest'
import { MAX_HELLO_LABELS, parseHello } from '../src/messages.js'
import { PROTOCOL_VERSION } from '../src/version.js'

const hello = (extra: Record<string, unknown>): unknown => ({ version: PROTOCOL_VERSION, agent: 'a', upstreams: ['prometheus'], ...extra })
const labels = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}`, 'v']))

describe('hello labels and agent version', () => {
  test(`at most ${MAX_HELLO_LABELS} labels; agentVersion optional, a string of at most 64 characters`, () => {
    expect(Object.keys(parseHello(hello({ labels: labels(MAX_HELLO_LABELS) })).labels)).toHaveLength(MAX_HELLO_LABELS)
    expect(() => parseHello(hello({ labels: labels(MAX_HELLO_LABELS + 1) }))).toThrow(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }))
    expect(parseHello(hello({ agentVersion: 'v'.repeat(64) })).agentVersion).toBe('v'.repeat(64))
    expect(parseHello(hello({})).agentVersion).toBeUndefined()
    expect(() => parseHello(hello({ agentVersion: 'v'.repeat(65) }))).toThrow(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }))
    expect(() => parseHello(hello({ agentVersion: 1 }))).toThrow(expect.objectContaining({ code: 'SLK_ERR_PROTO_HEADER_INVALID' }))
  })
})
