import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { findExecutable } from '../src/find-executable.js'

describe('findExecutable', () => {
  let dir: string
  let tool: string
  let plain: string
  const saved = { PATH: process.env.PATH, SLK_TEST_TOOL_BIN: process.env.SLK_TEST_TOOL_BIN }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slk-find-exe-'))
    tool = join(dir, 'slk-tool')
    plain = join(dir, 'slk-not-executable')
    await writeFile(tool, '#!/bin/sh\n')
    await chmod(tool, 0o755)
    await writeFile(plain, 'data\n')
  })

  afterAll(async () => {
    // Unit files share a worker: put back what this file changed.
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) Reflect.deleteProperty(process.env, key)
      else process.env[key] = value
    }
    await rm(dir, { recursive: true, force: true })
  })

  test('PATH first, then the fallbacks; a file without the x bit does not count', () => {
    process.env.PATH = `/nonexistent:${dir}`
    Reflect.deleteProperty(process.env, 'SLK_TEST_TOOL_BIN')
    expect(findExecutable({ name: 'slk-tool', fallbacks: ['/bin/sh'] })).toBe(tool)
    expect(findExecutable({ name: 'slk-missing', fallbacks: [plain, '/bin/sh'] })).toBe('/bin/sh')
    expect(findExecutable({ name: 'slk-not-executable' })).toBeUndefined()
  })

  test('the environment variable, when set, is the only answer', () => {
    process.env.PATH = dir
    process.env.SLK_TEST_TOOL_BIN = plain
    expect(findExecutable({ env: 'SLK_TEST_TOOL_BIN', name: 'slk-tool' })).toBeUndefined()
    process.env.SLK_TEST_TOOL_BIN = '/bin/sh'
    expect(findExecutable({ env: 'SLK_TEST_TOOL_BIN', name: 'slk-tool' })).toBe('/bin/sh')
    process.env.SLK_TEST_TOOL_BIN = ''
    expect(findExecutable({ env: 'SLK_TEST_TOOL_BIN', name: 'slk-tool' })).toBe(tool)
  })
})
