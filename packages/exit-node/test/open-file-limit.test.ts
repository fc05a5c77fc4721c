import { describe, expect, test } from 'vitest'
import { maxSessionsOf, parseOpenFileLimit, readOpenFileLimit } from '@spokelink/exit-node'
import { parseSpokesConfig } from '@spokelink/auth'

const PROC_LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`

describe('open file limit', () => {
  test('parses the soft and hard limit from /proc/<pid>/limits', () => {
    expect(parseOpenFileLimit(PROC_LIMITS)).toEqual({ soft: 1024, hard: 524288 })
    expect(parseOpenFileLimit(PROC_LIMITS.replace('1024                 524288', 'unlimited            unlimited'))).toEqual({ soft: Infinity, hard: Infinity })
    expect(parseOpenFileLimit('Max processes 10 10 processes\n')).toBeUndefined()
  })

  test('Node has raised this process\'s soft limit to the hard one', () => {
    const limit = readOpenFileLimit()
    expect(limit).toBeDefined()
    expect(limit?.soft).toBe(limit?.hard)
  })
})

describe('maxSessionsOf', () => {
  test('the spoke\'s maxSessions, else the file\'s maxSessionsPerSpoke, else the exit-node default', () => {
    const spokes = parseSpokesConfig(`
maxSessionsPerSpoke: 3
spokes:
  - {name: one, maxSessions: 1}
  - {name: other}
`, 'test')
    expect([maxSessionsOf(spokes, 'one', 4), maxSessionsOf(spokes, 'other', 4)]).toEqual([1, 3])
    expect(maxSessionsOf(parseSpokesConfig('spokes: [{name: other}]', 'test'), 'other', 4)).toBe(4)
  })
})
