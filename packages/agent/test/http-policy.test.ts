import { describe, expect, test } from 'vitest'
import { checkRequestHead, READ_ONLY_RULES, requestHeadBytes } from '@spokelink/http-policy'
import type { HttpPolicy, RequestHead } from '@spokelink/http-policy'
import { parseHttpPolicies } from '../src/http-policy.js'

const READ_ONLY: HttpPolicy = { upstream: 'prometheus', kind: 'read-only', rules: READ_ONLY_RULES }
const LIMITS = { maxBodyBytes: 1024, maxHeaderBytes: 4096 }

function head (method: string, url: string, headers: string[] = ['Host', 'h'], httpVersion = '1.1'): RequestHead {
  return { method, url, httpVersion, rawHeaders: headers }
}

describe('checkRequestHead with --read-only', () => {
  test.each([
    ['GET', '/federate?match[]={job!=""}'],
    ['HEAD', '/federate'],
    ['GET', '/metrics'],
    ['GET', '/api/v1/query?query=up'],
    ['GET', '/api/v1/query_range?query=up'],
    ['GET', '/api/v1/series?match[]=up'],
    ['GET', '/api/v1/labels'],
    ['GET', '/api/v1/label/job/values'],
    ['GET', '/api/v1/label/__name__/values'],
    ['GET', '/api/v1/metadata'],
    ['GET', '/-/healthy'],
    ['HEAD', '/-/ready'],
    ['POST', '/api/v1/query'],
    ['POST', '/api/v1/query_range'],
    ['POST', '/api/v1/series'],
    ['POST', '/api/v1/labels'],
  ])('%s %s is allowed', (method, url) => {
    expect(checkRequestHead(READ_ONLY, head(method, url), LIMITS)).toEqual({ allowed: true, hasBody: false })
  })

  test.each([
    ['POST', '/api/v1/admin/tsdb/delete_series', 'path'],
    ['PUT', '/-/quit', 'method'],
    ['DELETE', '/api/v1/series', 'method'],
    ['OPTIONS', '/federate', 'method'],
    ['PATCH', '/federate', 'method'],
    ['GET', '/api/v1/status/config', 'path'],
    ['GET', '/api/v1/label/job', 'path'],
    ['GET', '/api/v1/label/a/b/values', 'path'],
    ['GET', '/federate/', 'bad_path'],
    ['GET', '/federatex', 'path'],
    ['GET', '/', 'path'],
    ['POST', '/federate', 'path'],
    ['POST', '/api/v1/label/job/values', 'path'],
    ['GET', '/api/v1/../admin', 'bad_path'],
    ['GET', '/api/v1/./query', 'bad_path'],
    ['GET', '/api/v1/%2e%2e/admin', 'bad_path'],
    ['GET', '/%66ederate', 'bad_path'],
    ['GET', '//federate', 'bad_path'],
    ['GET', '/federate;x', 'bad_path'],
    ['GET', '/federate\\..', 'bad_path'],
    ['GET', '/federate#x', 'bad_path'],
    ['GET', 'http://h/federate', 'target'],
    ['GET', '*', 'target'],
    ['CONNECT', 'h:443', 'target'],
  ])('%s %s is refused as %s', (method, url, reason) => {
    expect(checkRequestHead(READ_ONLY, head(method, url), LIMITS)).toMatchObject({ allowed: false, reason })
  })

  test.each([
    ['no Host', [], 'header'],
    ['duplicate Host', ['Host', 'a', 'host', 'b'], 'header'],
    ['duplicate Content-Length', ['Host', 'h', 'Content-Length', '0', 'Content-Length', '0'], 'header'],
    ['duplicate Authorization', ['Host', 'h', 'Authorization', 'a', 'Authorization', 'b'], 'header'],
    ['Transfer-Encoding: gzip', ['Host', 'h', 'Transfer-Encoding', 'gzip'], 'header'],
    ['Expect', ['Host', 'h', 'Expect', '100-continue'], 'expect'],
    ['Upgrade', ['Host', 'h', 'Upgrade', 'websocket'], 'upgrade'],
    ['Connection: upgrade', ['Host', 'h', 'Connection', 'keep-alive, Upgrade'], 'upgrade'],
    ['a body on GET', ['Host', 'h', 'Content-Length', '3'], 'body'],
    ['chunked GET', ['Host', 'h', 'Transfer-Encoding', 'chunked'], 'body'],
  ])('GET /federate with %s is refused', (_name, headers, reason) => {
    expect(checkRequestHead(READ_ONLY, head('GET', '/federate', headers), LIMITS)).toMatchObject({ allowed: false, reason })
  })

  test('HTTP/1.0 is refused', () => {
    expect(checkRequestHead(READ_ONLY, head('GET', '/federate', ['Host', 'h'], '1.0'), LIMITS)).toMatchObject({ allowed: false, reason: 'version' })
  })

  test('POST needs a form body within maxBodyBytes', () => {
    const form = (length: string, type = 'application/x-www-form-urlencoded; charset=UTF-8'): string[] => ['Host', 'h', 'Content-Type', type, 'Content-Length', length]
    expect(checkRequestHead(READ_ONLY, head('POST', '/api/v1/query', form('1024')), LIMITS)).toEqual({ allowed: true, hasBody: true })
    expect(checkRequestHead(READ_ONLY, head('POST', '/api/v1/query', form('1025')), LIMITS)).toMatchObject({ allowed: false, reason: 'body_too_large' })
    expect(checkRequestHead(READ_ONLY, head('POST', '/api/v1/query', form('5', 'application/json')), LIMITS)).toMatchObject({ allowed: false, reason: 'body' })
    expect(checkRequestHead(READ_ONLY, head('POST', '/api/v1/query', ['Host', 'h', 'Content-Type', 'application/x-www-form-urlencoded', 'Transfer-Encoding', 'chunked']), LIMITS)).toEqual({ allowed: true, hasBody: true })
  })

  test('a head of exactly maxHeaderBytes passes, one byte more is refused', () => {
    const padded = (bytes: number): RequestHead => {
      const base = head('GET', '/federate', ['Host', 'h', 'X-Pad', ''])
      return head('GET', '/federate', ['Host', 'h', 'X-Pad', 'p'.repeat(bytes - requestHeadBytes(base))])
    }
    expect(requestHeadBytes(head('GET', '/federate', ['Host', 'h']))).toBe('GET /federate HTTP/1.1\r\nHost: h\r\n\r\n'.length)
    expect(checkRequestHead(READ_ONLY, padded(4096), LIMITS)).toMatchObject({ allowed: true })
    expect(checkRequestHead(READ_ONLY, padded(4097), LIMITS)).toMatchObject({ allowed: false, reason: 'header_too_large' })
  })
})

describe('parseHttpPolicies', () => {
  test('--allow with a comma list (split by the CLI) and wildcards', () => {
    const [policy] = parseHttpPolicies([], ['prometheus=GET /federate', 'GET /api/v1/*', 'POST /api/v1/query'])
    if (policy === undefined) throw new Error('no policy')
    expect(policy.kind).toBe('allow')
    const check = (method: string, url: string): boolean => checkRequestHead(policy, head(method, url, ['Host', 'h', 'Content-Type', 'application/x-www-form-urlencoded']), LIMITS).allowed
    expect(check('GET', '/federate')).toBe(true)
    expect(check('HEAD', '/federate')).toBe(true)
    expect(check('GET', '/api/v1/status/config')).toBe(true)
    expect(check('GET', '/api/v1/label/job/values')).toBe(true)
    expect(check('GET', '/api/v1')).toBe(false)
    expect(check('GET', '/metrics')).toBe(false)
    expect(check('POST', '/api/v1/query')).toBe(true)
    expect(check('POST', '/api/v1/query_range')).toBe(false)
  })

  test('several upstreams, --read-only and --allow together', () => {
    const policies = parseHttpPolicies(['prometheus'], ['am=GET /api/v2/alerts', 'GET /-/healthy', 'loki=GET /loki/api/v1/*'])
    expect(policies.map((p) => [p.upstream, p.kind, p.rules.length])).toEqual([['prometheus', 'read-only', READ_ONLY_RULES.length], ['am', 'allow', 4], ['loki', 'allow', 2]])
  })

  test.each([
    [['Prom'], [], /--read-only: expected an upstream name/],
    [['prometheus'], ['prometheus=GET /federate'], /has more than one policy/],
    [[], ['GET /federate'], /--allow: expected NAME=/],
    [[], ['prometheus=PUT /x'], /GET, HEAD or POST/],
    [[], ['prometheus=GET federate'], /expected rules like/],
    [[], ['prometheus=GET /api/../x'], /not a plain path/],
    [[], ['prometheus=GET /a%2fb'], /not a plain path/],
    [[], ['prometheus='], /at least one rule/],
  ])('%j %j is refused', (readOnly, allow, message) => {
    expect(() => parseHttpPolicies(readOnly, allow)).toThrow(message)
    expect(() => parseHttpPolicies(readOnly, allow)).toThrow(expect.objectContaining({ code: 'SLK_ERR_AGENT_INVALID_OPTION' }))
  })
})
