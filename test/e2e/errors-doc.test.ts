import { readFile, readdir } from 'node:fs/promises'
import { describe, expect, test } from 'vitest'

const root = new URL('../../', import.meta.url)

async function declaredCodes (): Promise<Map<string, string>> {
  const codes = new Map<string, string>()
  for (const pkg of await readdir(new URL('packages/', root))) {
    const file = new URL(`packages/${pkg}/src/errors.ts`, root)
    const text = await readFile(file, 'utf8').catch(() => '')
    // Only the closed unions (`export type XxxErrorCode = | '…'`) declare codes; other mentions are uses.
    for (const union of text.matchAll(/export type \w+ErrorCode =([^]*?)\n(?:\n|\/)/g)) {
      for (const match of (union[1] ?? '').matchAll(/'(SLK_ERR_[A-Z0-9_]+)'/g)) {
        if (match[1] !== undefined) codes.set(match[1], pkg)
      }
    }
  }
  return codes
}

// fastify's approach: the error catalogue is a contract, so a code missing from docs/errors.md fails the build.
describe('docs/errors.md', () => {
  test('lists every error code declared in a package errors.ts, and nothing else', async () => {
    const doc = await readFile(new URL('docs/errors.md', root), 'utf8')
    const documented = new Set([...doc.matchAll(/^### (SLK_ERR_[A-Z0-9_]+)/gm)].map((match) => match[1]))
    const declared = await declaredCodes()
    expect(declared.size).toBeGreaterThan(20)
    expect([...declared.keys()].filter((code) => !documented.has(code))).toEqual([])
    expect([...documented].filter((code) => code !== undefined && !declared.has(code))).toEqual([])
  })
})
