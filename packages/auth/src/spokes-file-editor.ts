import { isCollection, isMap, isPair, isScalar, isSeq, parse as parseYaml, parseDocument } from 'yaml'
import type { Document, Node as YamlNode, YAMLMap } from 'yaml'
import { AuthError, ConfigError } from './errors.js'
import { SPOKE_TOKEN_ID_PATTERN } from './spoke-token-format.js'
import { parseSpokesConfig, spokesConfigFingerprint } from './spokes-config.js'
import type { SpokesConfig, TokenEntry } from './spokes-config.js'
import { isSha256Hex } from './sha256-hex.js'

/** One row of {@link listSpokeTokens}. */
export interface SpokeTokenListing {
  /** Name of the spoke the token belongs to. */
  spoke: string
  /** Token id. */
  id: string
  /** Expiry, when set. */
  expires?: Date
  /** Whether the token has been revoked. */
  revoked: boolean
  /** Creation time, when recorded. */
  created?: Date
}

const DEFAULT_SOURCE = 'spokes file'

/**
 * Returns the spokes file text with `entry` appended to the tokens of spoke `spokeName`, written as a flow mapping
 * `{id: …, sha256: "…", created: "…", expires: "…"}` like the DESIGN example. The edit is a splice located with the
 * yaml Document API, so every other byte (comments, alignment, other spokes, ports, labels) is kept exactly; if the
 * file's layout is too unusual to splice safely, the Document is edited and re-serialised instead (comments kept,
 * whitespace normalised). The result is re-validated either way.
 * @param source - file path for error messages (default `'spokes file'`)
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_FILE` (the text or the entry is invalid),
 * `SLK_ERR_CONFIG_UNKNOWN_SPOKE` (no spoke `spokeName`), `SLK_ERR_CONFIG_DUPLICATE` (the token id is already used)
 */
export function addSpokeToken (text: string, spokeName: string, entry: TokenEntry, source: string = DEFAULT_SOURCE): string {
  const config = parseSpokesConfig(text, source)
  validateEntry(entry, source)
  const spoke = config.spokes.find((s) => s.name === spokeName)
  if (spoke === undefined) {
    throw new ConfigError('SLK_ERR_CONFIG_UNKNOWN_SPOKE', `${source}: no spoke named ${JSON.stringify(spokeName)}; add it to the spokes list first`)
  }
  const owner = config.spokes.find((s) => s.tokens.some((t) => t.id === entry.id))
  if (owner !== undefined) {
    throw new ConfigError('SLK_ERR_CONFIG_DUPLICATE', `${source}: token id ${entry.id} is already used by spoke ${owner.name}`)
  }
  const normalized = normalizeEntry(entry)
  const expected: SpokesConfig = {
    ...config,
    spokes: config.spokes.map((s) => s.name === spokeName ? { ...s, tokens: [...s.tokens, normalized] } : s),
  }
  const doc = parseDocument(text)
  const spokeMap = findEntryMap(doc, 'spokes', 'name', spokeName, source)
  const flowEntry = formatEntry(normalized)
  return finish(source, expected, spliceAddToken(text, spokeMap, flowEntry), () => {
    const tokens = spokeMap.get('tokens', true)
    const node = doc.createNode(entryToPlain(normalized), { flow: true })
    if (isSeq(tokens)) {
      if (tokens.items.length === 0) tokens.flow = false
      tokens.items.push(node)
    } else {
      spokeMap.set('tokens', doc.createNode([node]))
    }
    return doc
  })
}

/**
 * Returns the spokes file text with token `tokenId` marked `revoked: true`. Revoked tokens stay in the file (rather
 * than being removed) so `spokelink token list` still shows them and the exit-node answers 403
 * `SLK_ERR_AUTH_TOKEN_REVOKED` instead of 401; the watch closes the token's live sessions. Revoking an already
 * revoked token returns `text` unchanged. Edits are splices, as in {@link addSpokeToken}.
 * @param source - file path for error messages (default `'spokes file'`)
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_FILE` (the text is invalid), `SLK_ERR_CONFIG_UNKNOWN_TOKEN`
 * (no token with that id)
 */
export function revokeSpokeToken (text: string, tokenId: string, source: string = DEFAULT_SOURCE): string {
  const config = parseSpokesConfig(text, source)
  const owner = config.spokes.find((s) => s.tokens.some((t) => t.id === tokenId))
  if (owner === undefined) {
    throw new ConfigError('SLK_ERR_CONFIG_UNKNOWN_TOKEN', `${source}: no token with id ${JSON.stringify(tokenId.slice(0, 40))}; see "spokelink token list"`)
  }
  if (owner.tokens.some((t) => t.id === tokenId && t.revoked === true)) return text
  const expected: SpokesConfig = {
    ...config,
    spokes: config.spokes.map((s) => s !== owner
      ? s
      : { ...s, tokens: s.tokens.map((t) => t.id === tokenId ? { ...t, revoked: true } : t) }),
  }
  const doc = parseDocument(text)
  const tokenMap = findEntryMap(findEntryMap(doc, 'spokes', 'name', owner.name, source), 'tokens', 'id', tokenId, source)
  return finish(source, expected, spliceRevoke(text, tokenMap), () => {
    tokenMap.set('revoked', true)
    return doc
  })
}

/**
 * Returns the spokes file text with token `tokenId`'s `expires` set to `expires` (added when absent). Used by
 * rotation to end an old token after its overlap; the caller decides whether the new date is earlier. Edits are
 * splices, as in {@link addSpokeToken}.
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_FILE`, `SLK_ERR_CONFIG_UNKNOWN_TOKEN`
 */
export function setSpokeTokenExpiry (text: string, tokenId: string, expires: Date, source: string = DEFAULT_SOURCE): string {
  const config = parseSpokesConfig(text, source)
  const owner = config.spokes.find((s) => s.tokens.some((t) => t.id === tokenId))
  if (owner === undefined) {
    throw new ConfigError('SLK_ERR_CONFIG_UNKNOWN_TOKEN', `${source}: no token with id ${JSON.stringify(tokenId.slice(0, 40))}; see "spokelink token list"`)
  }
  if (Number.isNaN(expires.getTime())) throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: token ${tokenId}: expires: expected a valid Date`)
  const expected: SpokesConfig = {
    ...config,
    spokes: config.spokes.map((s) => s !== owner
      ? s
      : { ...s, tokens: s.tokens.map((t) => t.id === tokenId ? normalizeEntry({ ...t, expires }) : t) }),
  }
  const doc = parseDocument(text)
  const tokenMap = findEntryMap(findEntryMap(doc, 'spokes', 'name', owner.name, source), 'tokens', 'id', tokenId, source)
  return finish(source, expected, spliceSetField(text, tokenMap, 'expires', JSON.stringify(isoString(expires))), () => {
    tokenMap.set('expires', isoString(expires))
    return doc
  })
}

/**
 * Records the client certificate just issued to token `tokenId` (`certSerial: <serial>`), as a compare-and-swap on the
 * text read under the spokes-file lock: the token's current `certSerial` must be `expectedSerial` (undefined for the
 * bootstrap, the serial the session presented for a renewal). That is what makes the bootstrap single-use: of two
 * agents bootstrapping with one token at once, the second edit finds a serial and fails.
 * @throws {AuthError} `SLK_ERR_AUTH_CERT_BOOTSTRAPPED` when the token's serial is not `expectedSerial`
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_FILE`, `SLK_ERR_CONFIG_UNKNOWN_TOKEN`
 */
export function recordClientCertificate (text: string, tokenId: string, serial: string, expectedSerial: string | undefined, source: string = DEFAULT_SOURCE): string {
  const config = parseSpokesConfig(text, source)
  const owner = config.spokes.find((s) => s.tokens.some((t) => t.id === tokenId))
  const token = owner?.tokens.find((t) => t.id === tokenId)
  if (owner === undefined || token === undefined) {
    throw new ConfigError('SLK_ERR_CONFIG_UNKNOWN_TOKEN', `${source}: no token with id ${JSON.stringify(tokenId.slice(0, 40))}; see "spokelink token list"`)
  }
  if (token.certSerial !== expectedSerial) {
    throw new AuthError('SLK_ERR_AUTH_CERT_BOOTSTRAPPED', expectedSerial === undefined
      ? `token ${tokenId} already bootstrapped a client certificate; connect with that certificate (or create a new token)`
      : `token ${tokenId}'s client certificate was renewed or replaced meanwhile; reconnect with the current one`)
  }
  const expected: SpokesConfig = {
    ...config,
    spokes: config.spokes.map((s) => s !== owner
      ? s
      : { ...s, tokens: s.tokens.map((t) => t.id === tokenId ? normalizeEntry({ ...t, certSerial: serial }) : t) }),
  }
  const doc = parseDocument(text)
  const tokenMap = findEntryMap(findEntryMap(doc, 'spokes', 'name', owner.name, source), 'tokens', 'id', tokenId, source)
  return finish(source, expected, spliceSetField(text, tokenMap, 'certSerial', JSON.stringify(serial)), () => {
    tokenMap.set('certSerial', serial)
    return doc
  })
}

/**
 * Adds `serial` to spoke `spokeName`'s `revokedSerials` (no-op when already there): that certificate is refused at
 * connect and its live sessions close on the exit-node's next revalidation tick.
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_FILE` (also for a serial that is not hex), `SLK_ERR_CONFIG_UNKNOWN_SPOKE`
 */
export function revokeCertificateSerial (text: string, spokeName: string, serial: string, source: string = DEFAULT_SOURCE): string {
  const config = parseSpokesConfig(text, source)
  const normalized = serial.toLowerCase()
  if (!/^[0-9a-f]{2,40}$/.test(normalized)) throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: a certificate serial is 2-40 hex digits`)
  const spoke = config.spokes.find((s) => s.name === spokeName)
  if (spoke === undefined) throw new ConfigError('SLK_ERR_CONFIG_UNKNOWN_SPOKE', `${source}: no spoke named ${JSON.stringify(spokeName)}`)
  if (spoke.revokedSerials?.includes(normalized) === true) return text
  const revokedSerials = [...(spoke.revokedSerials ?? []), normalized]
  const expected: SpokesConfig = { ...config, spokes: config.spokes.map((s) => s !== spoke ? s : { ...s, revokedSerials }) }
  const doc = parseDocument(text)
  const spokeMap = findEntryMap(doc, 'spokes', 'name', spokeName, source)
  return finish(source, expected, undefined, () => {
    spokeMap.set('revokedSerials', doc.createNode(revokedSerials, { flow: true }))
    return doc
  })
}

/** Lists every token of every spoke, in file order, for `spokelink token list` (never anything secret). */
export function listSpokeTokens (config: SpokesConfig): SpokeTokenListing[] {
  const rows: SpokeTokenListing[] = []
  for (const spoke of config.spokes) {
    for (const t of spoke.tokens) {
      const row: SpokeTokenListing = { spoke: spoke.name, id: t.id, revoked: t.revoked === true }
      if (t.expires !== undefined) row.expires = t.expires
      if (t.created !== undefined) row.created = t.created
      rows.push(row)
    }
  }
  return rows
}

function finish (source: string, expected: SpokesConfig, spliced: string | undefined, edit: () => Document): string {
  const want = spokesConfigFingerprint(expected)
  if (spliced !== undefined && matches(spliced, source, want)) return spliced
  const fallback = edit().toString({ lineWidth: 0, flowCollectionPadding: false })
  if (matches(fallback, source, want)) return fallback
  throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: cannot edit this file's layout safely; edit it by hand`)
}

function matches (text: string, source: string, fingerprint: string): boolean {
  try {
    return spokesConfigFingerprint(parseSpokesConfig(text, source)) === fingerprint
  } catch {
    // A splice that does not re-parse is simply not used; the caller falls back to the Document API.
    return false
  }
}

function spliceAddToken (text: string, spokeMap: YAMLMap, flowEntry: string): string | undefined {
  const tokensPair = spokeMap.items.find((p) => isScalar(p.key) && p.key.value === 'tokens')
  if (tokensPair === undefined) {
    const end = lastValueEnd(spokeMap.items.at(-1))
    if (end === undefined) return undefined
    if (spokeMap.flow === true) return insert(text, end, `, tokens: [${flowEntry}]`)
    const indent = blockIndent(text, spokeMap.items[0]?.key)
    return indent === undefined ? undefined : insert(text, lineEnd(text, end), `\n${indent}tokens:\n${indent}  - ${flowEntry}`)
  }
  const tokens = tokensPair.value
  if (!isSeq(tokens) || tokens.range == null) return undefined
  const last = tokens.items.at(-1)
  if (tokens.flow === true) {
    if (last === undefined) {
      const close = tokens.range[1] - 1
      return text[close] === ']' ? insert(text, close, flowEntry) : undefined
    }
    const end = lastValueEnd(last)
    return end === undefined ? undefined : insert(text, end, `, ${flowEntry}`)
  }
  const end = last === undefined ? undefined : lastValueEnd(last)
  const indent = blockIndent(text, tokens)
  if (end === undefined || indent === undefined) return undefined
  return insert(text, lineEnd(text, end), `\n${indent}- ${flowEntry}`)
}

function spliceRevoke (text: string, tokenMap: YAMLMap): string | undefined {
  return spliceSetField(text, tokenMap, 'revoked', 'true')
}

/** Replaces the scalar value of `key` in `tokenMap` with `valueText`, or appends `key: valueText` when absent. */
function spliceSetField (text: string, tokenMap: YAMLMap, key: string, valueText: string): string | undefined {
  const pair = tokenMap.items.find((p) => isScalar(p.key) && p.key.value === key)
  if (pair !== undefined) {
    const value = pair.value
    if (!isScalar(value) || value.range == null) return undefined
    return text.slice(0, value.range[0]) + valueText + text.slice(value.range[1])
  }
  const end = lastValueEnd(tokenMap.items.at(-1))
  if (end === undefined) return undefined
  if (tokenMap.flow === true) return insert(text, end, `, ${key}: ${valueText}`)
  const indent = blockIndent(text, tokenMap.items[0]?.key)
  return indent === undefined ? undefined : insert(text, lineEnd(text, end), `\n${indent}${key}: ${valueText}`)
}

/** Offset just after the last value of `node`, excluding trailing comments and line breaks. */
function lastValueEnd (node: unknown): number | undefined {
  if (isPair(node)) return lastValueEnd(node.value ?? node.key)
  if (isScalar(node)) return node.range?.[1]
  if (isCollection(node)) {
    if (node.flow === true) return node.range?.[1]
    return lastValueEnd(node.items.at(-1))
  }
  return undefined
}

/**
 * The indentation of `node`'s column, when only spaces and block-sequence markers precede it on its line
 * (`      - id: x` gives 8 spaces for the keys of that mapping).
 */
function blockIndent (text: string, node: unknown): string | undefined {
  if (!isScalar(node) && !isCollection(node)) return undefined
  const start = (node as YamlNode).range?.[0]
  if (start === undefined) return undefined
  const prefix = text.slice(text.lastIndexOf('\n', start - 1) + 1, start)
  return /^ *(?:- +)*$/.test(prefix) ? ' '.repeat(prefix.length) : undefined
}

function lineEnd (text: string, offset: number): number {
  const nl = text.indexOf('\n', offset)
  if (nl < 0) return text.length
  return nl > 0 && text[nl - 1] === '\r' ? nl - 1 : nl
}

function insert (text: string, offset: number, s: string): string {
  return text.slice(0, offset) + s + text.slice(offset)
}

/**
 * The mapping in `parent[listKey]` whose `field` is `value` (a spoke by name, a token by id).
 * @throws ConfigError when it is not a plain mapping there (an alias or anchor we cannot edit in place)
 */
function findEntryMap (parent: Document | YAMLMap, listKey: 'spokes' | 'tokens', field: 'name' | 'id', value: string, source: string): YAMLMap {
  const list = parent.get(listKey, true)
  if (isSeq(list)) {
    for (const item of list.items) {
      if (isMap(item) && item.get(field) === value) return item
    }
  }
  const what = listKey === 'spokes' ? 'spoke' : 'token'
  throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: ${what} ${value} is not a plain mapping (YAML aliases cannot be edited); edit it by hand`)
}

function validateEntry (entry: TokenEntry, source: string): void {
  if (!SPOKE_TOKEN_ID_PATTERN.test(entry.id)) {
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: new token id: expected 4-32 lowercase letters and digits`)
  }
  if (!isSha256Hex(entry.sha256)) {
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: new token ${entry.id}: sha256: expected 64 hex digits (sha256 of the token secret)`)
  }
  for (const key of ['expires', 'created'] as const) {
    const d = entry[key]
    if (d !== undefined && Number.isNaN(d.getTime())) {
      throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: new token ${entry.id}: ${key}: expected a valid Date`)
    }
  }
}

function normalizeEntry (entry: TokenEntry): TokenEntry {
  // Same key order as parseSpokesConfig builds, so fingerprints compare equal.
  const out: TokenEntry = { id: entry.id, sha256: entry.sha256.toLowerCase() }
  if (entry.expires !== undefined) out.expires = new Date(entry.expires.getTime())
  if (entry.created !== undefined) out.created = new Date(entry.created.getTime())
  if (entry.revoked !== undefined) out.revoked = entry.revoked
  if (entry.certSerial !== undefined) out.certSerial = entry.certSerial
  return out
}

function entryToPlain (entry: TokenEntry): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = { id: entry.id, sha256: entry.sha256 }
  if (entry.created !== undefined) out.created = isoString(entry.created)
  if (entry.expires !== undefined) out.expires = isoString(entry.expires)
  if (entry.revoked !== undefined) out.revoked = entry.revoked
  if (entry.certSerial !== undefined) out.certSerial = entry.certSerial
  return out
}

function formatEntry (entry: TokenEntry): string {
  // A plain id only when YAML reads it back as the same string (`12345678` or `2e345672` would be numbers).
  const id = /^[a-z][a-z0-9]*$/.test(entry.id) && parseYaml(entry.id) === entry.id ? entry.id : JSON.stringify(entry.id)
  const parts = Object.entries(entryToPlain(entry)).map(([k, v]) => k === 'id' ? `id: ${id}` : `${k}: ${JSON.stringify(v)}`)
  return `{${parts.join(', ')}}`
}

function isoString (d: Date): string {
  return d.toISOString().replace('.000Z', 'Z')
}
