import { createRequire } from 'node:module'

/** This package's version (from its package.json, one level above both src/ and dist/), sent in the hello. */
export const AGENT_VERSION: string = readVersion()

function readVersion (): string {
  const manifest: unknown = createRequire(import.meta.url)('../package.json')
  return typeof manifest === 'object' && manifest !== null && 'version' in manifest && typeof manifest.version === 'string' ? manifest.version : 'unknown'
}
