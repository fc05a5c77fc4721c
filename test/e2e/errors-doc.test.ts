import { readFile } from 'node:fs/promises'
import { describe, expect, test } from 'vitest'
import { AGENT_ERROR_CODES, AgentError } from '@spokelink/agent'
import { AUTH_ERROR_CODES, AuthError, CONFIG_ERROR_CODES, ConfigError, SPOKES_FILE_ERROR_CODES, SpokesFileError } from '@spokelink/auth'
import { EXIT_NODE_ERROR_CODES, ExitNodeError } from '@spokelink/exit-node'
import { MUX_ERROR_CODES, MuxError, PROTOCOL_ERROR_CODES, ProtocolError } from '@spokelink/protocol'
import { SpokelinkError, isSpokelinkError } from '@spokelink/errors'
import { CLI_ERROR_CODES, CliError } from 'spokelink'

const root = new URL('../../', import.meta.url)

/** Every package's code list at run time (fastify's `FST_ERR_*` catalogue, undici's `errors`): no parsing of source. */
const CATALOGUE = [
  { package: 'protocol', make: (code: string) => new MuxError(code as typeof MUX_ERROR_CODES[number], 'm'), codes: MUX_ERROR_CODES },
  { package: 'protocol', make: (code: string) => new ProtocolError(code as typeof PROTOCOL_ERROR_CODES[number], 'm'), codes: PROTOCOL_ERROR_CODES },
  { package: 'auth', make: (code: string) => new AuthError(code as typeof AUTH_ERROR_CODES[number], 'm'), codes: AUTH_ERROR_CODES },
  { package: 'auth', make: (code: string) => new ConfigError(code as typeof CONFIG_ERROR_CODES[number], 'm'), codes: CONFIG_ERROR_CODES },
  { package: 'auth', make: (code: string) => new SpokesFileError(code as typeof SPOKES_FILE_ERROR_CODES[number], 'm'), codes: SPOKES_FILE_ERROR_CODES },
  { package: 'exit-node', make: (code: string) => new ExitNodeError(code as typeof EXIT_NODE_ERROR_CODES[number], 'm'), codes: EXIT_NODE_ERROR_CODES },
  { package: 'agent', make: (code: string) => new AgentError(code as typeof AGENT_ERROR_CODES[number], 'm'), codes: AGENT_ERROR_CODES },
  { package: 'cli', make: (code: string) => new CliError(code as typeof CLI_ERROR_CODES[number], 'm'), codes: CLI_ERROR_CODES },
] as const

// fastify's approach: the error catalogue is a contract, so a code missing from docs/errors.md fails the build.
describe('docs/errors.md', () => {
  test('lists every error code a package exports, and nothing else', async () => {
    const doc = await readFile(new URL('docs/errors.md', root), 'utf8')
    const documented = new Set([...doc.matchAll(/^### (SLK_ERR_[A-Z0-9_]+)/gm)].map((match) => match[1]))
    const declared = new Set<string>(CATALOGUE.flatMap((entry) => [...entry.codes]))
    expect(declared.size).toBeGreaterThan(20)
    expect([...declared].filter((code) => !documented.has(code))).toEqual([])
    expect([...documented].filter((code) => code !== undefined && !declared.has(code))).toEqual([])
  })

  test('every code is SLK_ERR_<AREA>_<WHAT>, belongs to one list, and its error is a SpokelinkError carrying it', () => {
    const seen = new Map<string, string>()
    for (const entry of CATALOGUE) {
      for (const code of entry.codes) {
        expect(code).toMatch(/^SLK_ERR_[A-Z0-9]+_[A-Z0-9_]+$/)
        expect(seen.get(code), `${code} is in two lists`).toBeUndefined()
        seen.set(code, entry.package)
        const err = entry.make(code)
        expect(err).toBeInstanceOf(SpokelinkError)
        expect(isSpokelinkError(err, code)).toBe(true)
        expect(err).toMatchObject({ code, message: 'm' })
      }
    }
  })
})
