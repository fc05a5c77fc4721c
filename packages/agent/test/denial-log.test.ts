import { Writable } from 'node:stream'
import pino from 'pino'
import { expect, test } from 'vitest'
import { DenialLog } from '../src/denial-log.js'

function capture (): { logger: pino.Logger, lines: () => Array<Record<string, unknown>> } {
  const lines: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _e, cb) { lines.push(chunk.toString('utf8')); cb() } })
  return { logger: pino({ level: 'debug' }, sink), lines: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) }
}

test('refusals: each at debug; at warn the first at once, the rest of the interval as one line of counts', () => {
  const { logger, lines } = capture()
  let now = 1000
  const log = new DenialLog(logger, { intervalMs: 60_000, now: () => now })
  const denial = { upstream: 'prometheus', streamId: 3, method: 'DELETE', path: '/api/v1/series', reason: 'method' as const }
  log.record(denial)
  log.record({ ...denial, reason: 'path' })
  log.record({ ...denial, reason: 'path' })
  log.record({ ...denial, reason: 'malformed' })
  const warns = (): Array<Record<string, unknown>> => lines().filter((l) => l.level === 40)
  expect(lines().filter((l) => l.level === 20)).toHaveLength(4)
  expect(warns()).toEqual([expect.objectContaining({ msg: 'request denied by policy', upstream: 'prometheus', method: 'DELETE', path: '/api/v1/series', reason: 'method' })])
  now += 60_000
  log.record(denial)
  expect(warns().slice(1)).toEqual([
    expect.objectContaining({ msg: 'requests denied by policy', upstream: 'prometheus', count: 3, reasons: { path: 2, malformed: 1 } }),
    expect.objectContaining({ msg: 'request denied by policy', reason: 'method' }),
  ])
  log.close()
  expect(warns()).toHaveLength(3)
  // Never headers or a query: a debug line has exactly these fields.
  const fields = (line: Record<string, unknown>): string[] => Object.keys(line).filter((k) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(k)).sort()
  expect(lines().filter((l) => l.level === 20).map(fields)).toEqual(Array.from({ length: 5 }, () => ['method', 'path', 'reason', 'streamId', 'upstream']))
})
