import { isIPv4, isIPv6 } from 'node:net'
import { parseDocument } from 'yaml'
import { parsePolicyRuleText } from '@spokelink/http-policy'
import type { PolicyRule } from '@spokelink/http-policy'
import { ConfigError } from './errors.js'
import { SPOKE_TOKEN_ID_PATTERN, isSpokeToken } from './spoke-token-format.js'
import { isSha256Hex } from './sha256-hex.js'

/** One token of a spoke, as stored in the spokes file: the id and the sha256 of the secret, never the secret. */
export interface TokenEntry {
  /** Token id (the `<id>` of `slk_<id>_<secret>`), unique across the whole file. */
  id: string
  /** Lowercase hex sha256 of the token's secret part. */
  sha256: string
  /** When the token stops being accepted (exclusive). */
  expires?: Date
  /** `true` once revoked: the exit-node answers 403 and closes the token's sessions. */
  revoked?: boolean
  /** When the token was created (informational). */
  created?: Date
  /**
   * Serial (lowercase hex) of the client certificate last issued to this token (spokes with `requireClientCert`).
   * Once set, the token no longer bootstraps: connects must present the certificate with this serial.
   */
  certSerial?: string
}

/** A data-plane port of a spoke: the exit-node listens on `listen` and forwards to the agent's `upstream`. */
export interface PortConfig {
  /** Name of the agent-side upstream (`prometheus`), never a host:port. */
  upstream: string
  /** Where the exit-node listens; `host` has no brackets (`::1`, not `[::1]`). */
  listen: { host: string, port: number }
  /** A connection with no bytes either way for this long is closed (file: `idleTimeout: "5m"`); the exit-node's default when absent. */
  idleTimeoutMs?: number
  /** Concurrent connections this port accepts; more are refused at once. The exit-node's default when absent. */
  maxConnections?: number
}

/**
 * A service in the hub a spoke may reach through its tunnel (the agent's `--hub-service NAME=LISTEN`): the exit-node
 * dials `address` for streams naming `name`, and never an address the agent sends.
 */
export interface HubServiceConfig {
  /** What the agent names (`remote-write`); same rules as an upstream name. */
  name: string
  /** Where the exit-node dials, in the hub (`prometheus-hub.monitoring:9090`); `host` has no brackets. */
  address: { host: string, port: number }
  /** Streams the spoke may have open to this service at once (all its sessions together); the exit-node's default when absent. */
  maxConnections?: number
  /** A hub stream with no bytes either way for this long is closed (file: `idleTimeout: "5m"`); the exit-node's default when absent. */
  idleTimeoutMs?: number
  /**
   * HTTP allow-list (file: `allow: ["POST /api/v1/write"]`, the agent's `--allow` syntax): when present, the exit-node
   * parses every request on the service's streams and refuses (403) those not on it; absent, bytes are relayed as TCP.
   */
  allow?: PolicyRule[]
}

/** One spoke cluster. */
export interface SpokeConfig {
  /** DNS-1123 label, unique; becomes the Kubernetes Service name. */
  name: string
  /** Prometheus labels attached to the spoke's targets in `/v1/sd`. */
  labels: Record<string, string>
  /** Tokens the spoke's agents may use. */
  tokens: TokenEntry[]
  /** Data-plane ports the exit-node exposes for the spoke. */
  ports: PortConfig[]
  /** Hub services the spoke's agents may reach (the other direction); none when absent. */
  hubServices?: HubServiceConfig[]
  /** Live sessions the spoke may have at once (agent replicas); overrides the file's `maxSessionsPerSpoke`. */
  maxSessions?: number
  /** Agents must hold a client certificate the exit-node issued (bootstrapped once with the token). */
  requireClientCert?: boolean
  /** Client certificate serials (lowercase hex) refused at connect; their live sessions are closed. */
  revokedSerials?: string[]
}

/**
 * The parsed spokes file. Values returned by {@link parseSpokesConfig} are deep-frozen (Dates aside): treat them as
 * immutable, and edit the file text instead (`addSpokeToken`, `revokeSpokeToken`).
 */
export interface SpokesConfig {
  /** Every spoke, in file order. */
  spokes: SpokeConfig[]
  /** Sessions each spoke may have at once unless it sets `maxSessions`; when absent the exit-node's default (4). */
  maxSessionsPerSpoke?: number
}

const DNS_1123_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const UPSTREAM_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?$/
const ROOT_KEYS = ['spokes', 'maxSessionsPerSpoke']
const SPOKE_KEYS = ['name', 'labels', 'tokens', 'ports', 'hubServices', 'maxSessions', 'requireClientCert', 'revokedSerials']
const HUB_SERVICE_KEYS = ['name', 'address', 'maxConnections', 'idleTimeout', 'allow']
/** Rules in one hub service's `allow`: each request is matched against all of them. */
const MAX_ALLOW_RULES = 64
/** The welcome names every hub service of a spoke, so their count is bounded (`MAX_HUB_SERVICES` of the protocol). */
const MAX_HUB_SERVICES_PER_SPOKE = 16
const TOKEN_KEYS = ['id', 'sha256', 'expires', 'created', 'revoked', 'certSerial']
const SERIAL = /^[0-9a-f]{2,40}$/
const PORT_KEYS = ['upstream', 'listen', 'idleTimeout', 'maxConnections']
const DURATION = /^(\d{1,9})(ms|s|m|h)$/
const DURATION_UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const
/** Above this a per-port cap means nothing: a session carries at most 2^31 streams. */
const MAX_PORT_CONNECTIONS = 2 ** 31
/** A session carries at most 1024 streams by default; far above that a hub service cap is a typo. */
const MAX_HUB_CONNECTIONS = 65_536
const MAX_LABEL_VALUE_LENGTH = 1024
/** Far above any sane replica count; a typo like 40000 is caught instead of silently disabling the cap. */
const MAX_SESSIONS_LIMIT = 10_000
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::'])

/**
 * Parses and strictly validates a spokes file (YAML 1.2; JSON is valid YAML). Unknown keys, duplicate spoke names,
 * duplicate token ids, and listen addresses that would collide (same port and same host, or either host a
 * wildcard) are errors. `tokens`, `ports` and `labels` may be omitted (or left empty).
 * @param source - the file path, used as the first part of every error message
 * @returns a deep-frozen config
 * @throws {ConfigError} `SLK_ERR_CONFIG_SPOKES_FILE`, with a one-line message naming `source`, the field path
 * (`spokes[1].ports[0].listen`) and what was expected; YAML syntax errors give `source:line:col`
 */
export function parseSpokesConfig (text: string, source: string): SpokesConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true })
  const first = doc.errors[0]
  if (first !== undefined) {
    const pos = first.linePos?.[0]
    const where = pos === undefined ? source : `${source}:${pos.line}:${pos.col}`
    const reason = (first.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${where}: invalid YAML: ${reason}`)
  }
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${source}: invalid YAML: ${err instanceof Error ? err.message.split('\n')[0] ?? '' : 'cannot convert'}`, { cause: err })
  }
  return deepFreeze(new Validator(source).root(value))
}

class Validator {
  private readonly spokeNames = new Map<string, number>()
  private readonly tokenIds = new Map<string, string>()
  private readonly listens = new Map<number, Array<{ host: string, where: string }>>()

  constructor (private readonly source: string) {}

  root (value: unknown): SpokesConfig {
    if (value === null || value === undefined) {
      this.fail('spokes', 'required: a list of spokes (the file is empty)')
    }
    const map = this.mapping(value, '(root)', 'a mapping with a "spokes" list', ROOT_KEYS, '')
    if (!('spokes' in map)) this.fail('spokes', 'required: a list of spokes (use "spokes: []" for none)')
    const list = map.spokes
    if (!Array.isArray(list)) this.expected('spokes', 'a list of spokes', list)
    const config: SpokesConfig = { spokes: list.map((item, i) => this.spoke(item, `spokes[${i}]`, i)) }
    if (map.maxSessionsPerSpoke !== undefined) config.maxSessionsPerSpoke = this.sessionLimit(map.maxSessionsPerSpoke, 'maxSessionsPerSpoke')
    return config
  }

  private spoke (value: unknown, path: string, index: number): SpokeConfig {
    const map = this.mapping(value, path, 'a mapping with name, labels, tokens, ports, maxSessions', SPOKE_KEYS, `${path}.`)
    const name = map.name
    if (name === undefined) this.fail(`${path}.name`, 'required: a DNS-1123 label (lowercase letters, digits, "-")')
    if (typeof name !== 'string' || !DNS_1123_LABEL.test(name)) {
      this.expected(`${path}.name`, 'a DNS-1123 label (1-63 of [a-z0-9-], starting and ending with a letter or digit)', name)
    }
    const previous = this.spokeNames.get(name)
    if (previous !== undefined) this.fail(`${path}.name`, `duplicate spoke name "${name}" (also spokes[${previous}].name)`)
    this.spokeNames.set(name, index)
    const spoke: SpokeConfig = {
      name,
      labels: this.labels(map.labels, `${path}.labels`),
      tokens: this.list(map.tokens, `${path}.tokens`, 'a list of tokens').map((t, i) => this.token(t, `${path}.tokens[${i}]`, name)),
      ports: this.list(map.ports, `${path}.ports`, 'a list of ports').map((p, i) => this.port(p, `${path}.ports[${i}]`, name)),
    }
    if (map.hubServices !== undefined) spoke.hubServices = this.hubServices(map.hubServices, `${path}.hubServices`)
    if (map.maxSessions !== undefined) spoke.maxSessions = this.sessionLimit(map.maxSessions, `${path}.maxSessions`)
    if (map.requireClientCert !== undefined) {
      if (typeof map.requireClientCert !== 'boolean') this.expected(`${path}.requireClientCert`, 'true or false', map.requireClientCert)
      spoke.requireClientCert = map.requireClientCert
    }
    if (map.revokedSerials !== undefined) {
      spoke.revokedSerials = this.list(map.revokedSerials, `${path}.revokedSerials`, 'a list of certificate serials').map((serial, i) => this.serial(serial, `${path}.revokedSerials[${i}]`))
    }
    return spoke
  }

  private hubServices (value: unknown, path: string): HubServiceConfig[] {
    const list = this.list(value, path, 'a list of hub services like {name: remote-write, address: "prometheus-hub.monitoring:9090"}')
    if (list.length > MAX_HUB_SERVICES_PER_SPOKE) this.fail(path, `at most ${MAX_HUB_SERVICES_PER_SPOKE} hub services per spoke, got ${list.length}`)
    const names = new Map<string, number>()
    return list.map((item, i) => {
      const service = this.hubService(item, `${path}[${i}]`)
      const other = names.get(service.name)
      if (other !== undefined) this.fail(`${path}[${i}].name`, `duplicate hub service "${service.name}" (also ${path}[${other}].name)`)
      names.set(service.name, i)
      return service
    })
  }

  private hubService (value: unknown, path: string): HubServiceConfig {
    const map = this.mapping(value, path, 'a mapping with name, address and optionally maxConnections, idleTimeout, allow', HUB_SERVICE_KEYS, `${path}.`)
    const { name, address, maxConnections, idleTimeout, allow } = map
    if (name === undefined) this.fail(`${path}.name`, 'required: the name agents use with --hub-service (e.g. remote-write)')
    if (typeof name !== 'string' || !UPSTREAM_NAME.test(name)) {
      this.expected(`${path}.name`, 'a hub service name matching [a-z0-9][a-z0-9_-]* (at most 63 characters)', name)
    }
    if (address === undefined) this.fail(`${path}.address`, 'required: "host:port" the exit-node dials in the hub (e.g. "prometheus-hub.monitoring:9090")')
    const parsed = typeof address === 'string' ? parseListen(address) : undefined
    if (parsed === undefined || WILDCARD_HOSTS.has(parsed.host)) {
      this.expected(`${path}.address`, '"host:port" with an IP or hostname to dial (IPv6 in brackets, not 0.0.0.0 or ::) and a port 1-65535', address)
    }
    const service: HubServiceConfig = { name, address: parsed }
    if (maxConnections !== undefined) {
      if (typeof maxConnections !== 'number' || !Number.isInteger(maxConnections) || maxConnections < 1 || maxConnections > MAX_HUB_CONNECTIONS) {
        this.expected(`${path}.maxConnections`, `an integer from 1 to ${MAX_HUB_CONNECTIONS}`, maxConnections)
      }
      service.maxConnections = maxConnections
    }
    if (idleTimeout !== undefined) {
      const ms = typeof idleTimeout === 'string' ? parseDuration(idleTimeout) : undefined
      if (ms === undefined || ms <= 0) this.expected(`${path}.idleTimeout`, 'a duration above zero like "5m", "90s" or "500ms"', idleTimeout)
      service.idleTimeoutMs = ms
    }
    if (allow !== undefined) service.allow = this.allowList(allow, `${path}.allow`)
    return service
  }

  private allowList (value: unknown, path: string): PolicyRule[] {
    if (!Array.isArray(value) || value.length === 0) this.expected(path, 'a non-empty list of rules like "POST /api/v1/write"', value)
    if (value.length > MAX_ALLOW_RULES) this.fail(path, `at most ${MAX_ALLOW_RULES} rules, got ${value.length}`)
    return value.flatMap((rule: unknown, i) => {
      if (typeof rule !== 'string') this.expected(`${path}[${i}]`, 'a rule like "POST /api/v1/write"', rule)
      const parsed = parsePolicyRuleText(rule)
      if ('error' in parsed) this.fail(`${path}[${i}]`, parsed.error)
      return parsed.rules
    })
  }

  private serial (value: unknown, path: string): string {
    if (typeof value !== 'string' || !SERIAL.test(value.toLowerCase())) this.expected(path, 'a certificate serial in hex (quote it)', value)
    return value.toLowerCase()
  }

  private sessionLimit (value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_SESSIONS_LIMIT) {
      this.expected(path, `an integer from 1 to ${MAX_SESSIONS_LIMIT} (live sessions at once)`, value)
    }
    return value
  }

  private labels (value: unknown, path: string): Record<string, string> {
    const labels: Record<string, string> = {}
    if (value === undefined || value === null) return labels
    if (!isPlainObject(value)) this.expected(path, 'a mapping of label names to strings', value)
    for (const [key, v] of Object.entries(value)) {
      if (!LABEL_NAME.test(key) || key.startsWith('__')) {
        this.fail(`${path}.${key}`, 'expected a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__")')
      }
      if (typeof v !== 'string' || v.length > MAX_LABEL_VALUE_LENGTH) {
        this.expected(`${path}.${key}`, `a string of at most ${MAX_LABEL_VALUE_LENGTH} characters (quote numbers and booleans)`, v)
      }
      labels[key] = v
    }
    return labels
  }

  private token (value: unknown, path: string, spoke: string): TokenEntry {
    const map = this.mapping(value, path, 'a mapping with id, sha256 and optionally expires, created, revoked', TOKEN_KEYS, `${path}.`)
    const { id, sha256, expires, created, revoked, certSerial } = map
    if (id === undefined) this.fail(`${path}.id`, 'required: the token id')
    if (typeof id !== 'string' || !SPOKE_TOKEN_ID_PATTERN.test(id)) {
      this.expected(`${path}.id`, 'a token id of 4-32 lowercase letters and digits (quote it if it is all digits)', id)
    }
    const other = this.tokenIds.get(id)
    if (other !== undefined) this.fail(`${path}.id`, `duplicate token id "${id}" (also ${other})`)
    this.tokenIds.set(id, `${path}.id of spoke ${spoke}`)
    if (sha256 === undefined) this.fail(`${path}.sha256`, 'required: the sha256 of the token secret (64 hex digits)')
    // Never echo this field: a raw token pasted here by mistake would end up in logs.
    if (typeof sha256 !== 'string' || !isSha256Hex(sha256)) {
      const hint = isSpokeToken(sha256) ? ' (this looks like a raw token: store only the sha256 of its secret)' : ''
      this.fail(`${path}.sha256`, `expected 64 hex digits (sha256 of the token secret)${hint}`)
    }
    const entry: TokenEntry = { id, sha256: sha256.toLowerCase() }
    if (expires !== undefined) entry.expires = this.date(expires, `${path}.expires`)
    if (created !== undefined) entry.created = this.date(created, `${path}.created`)
    if (revoked !== undefined) {
      if (typeof revoked !== 'boolean') this.expected(`${path}.revoked`, 'true or false', revoked)
      entry.revoked = revoked
    }
    if (certSerial !== undefined) entry.certSerial = this.serial(certSerial, `${path}.certSerial`)
    return entry
  }

  private port (value: unknown, path: string, spoke: string): PortConfig {
    const map = this.mapping(value, path, 'a mapping with upstream, listen and optionally idleTimeout, maxConnections', PORT_KEYS, `${path}.`)
    const { upstream, listen, idleTimeout, maxConnections } = map
    if (upstream === undefined) this.fail(`${path}.upstream`, 'required: the agent upstream name (e.g. prometheus)')
    if (typeof upstream !== 'string' || !UPSTREAM_NAME.test(upstream)) {
      this.expected(`${path}.upstream`, 'an upstream name matching [a-z0-9][a-z0-9_-]* (at most 63 characters)', upstream)
    }
    if (listen === undefined) this.fail(`${path}.listen`, 'required: "host:port" the exit-node listens on')
    const parsed = typeof listen === 'string' ? parseListen(listen) : undefined
    if (parsed === undefined) {
      this.expected(`${path}.listen`, '"host:port" with an IP or hostname (IPv6 in brackets) and a port 1-65535', listen)
    }
    const where = `${path}.listen (spoke ${spoke})`
    const sameP = this.listens.get(parsed.port) ?? []
    const clash = sameP.find((l) => l.host === parsed.host || WILDCARD_HOSTS.has(l.host) || WILDCARD_HOSTS.has(parsed.host))
    if (clash !== undefined) this.fail(`${path}.listen`, `address ${JSON.stringify(listen)} collides with ${clash.where}`)
    sameP.push({ host: parsed.host, where })
    this.listens.set(parsed.port, sameP)
    const port: PortConfig = { upstream, listen: parsed }
    if (idleTimeout !== undefined) {
      const ms = typeof idleTimeout === 'string' ? parseDuration(idleTimeout) : undefined
      if (ms === undefined || ms <= 0) this.expected(`${path}.idleTimeout`, 'a duration above zero like "5m", "90s" or "500ms"', idleTimeout)
      port.idleTimeoutMs = ms
    }
    if (maxConnections !== undefined) {
      if (typeof maxConnections !== 'number' || !Number.isInteger(maxConnections) || maxConnections < 1 || maxConnections > MAX_PORT_CONNECTIONS) {
        this.expected(`${path}.maxConnections`, `an integer from 1 to ${MAX_PORT_CONNECTIONS}`, maxConnections)
      }
      port.maxConnections = maxConnections
    }
    return port
  }

  private date (value: unknown, path: string): Date {
    if (value instanceof Date && !Number.isNaN(value.getTime())) return new Date(value.getTime())
    const date = typeof value === 'string' ? parseIsoDate(value) : undefined
    if (date === undefined) this.expected(path, 'an ISO 8601 date like "2027-01-01T00:00:00Z" or "2027-01-01" (UTC)', value)
    return date
  }

  private list (value: unknown, path: string, what: string): unknown[] {
    if (value === undefined || value === null) return []
    if (!Array.isArray(value)) this.expected(path, what, value)
    return value
  }

  private mapping (value: unknown, path: string, what: string, keys: string[], prefix: string): Record<string, unknown> {
    if (!isPlainObject(value)) this.expected(path, what, value)
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) this.fail(`${prefix}${key}`, `unknown key (expected one of ${keys.join(', ')})`)
    }
    return value
  }

  private expected (path: string, what: string, got: unknown): never {
    this.fail(path, `expected ${what}, got ${describe(got)}`)
  }

  private fail (path: string, message: string): never {
    throw new ConfigError('SLK_ERR_CONFIG_SPOKES_FILE', `${this.source}: ${path}: ${message}`)
  }
}

function parseListen (s: string): { host: string, port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s)
  if (m === null) return undefined
  const port = Number(m[3])
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined
  const v6 = m[1]
  if (v6 !== undefined) return isIPv6(v6) ? { host: v6.toLowerCase(), port } : undefined
  const host = m[2] ?? ''
  if (isIPv4(host) || (host.length <= 253 && HOSTNAME.test(host))) return { host: host.toLowerCase(), port }
  return undefined
}

function parseDuration (s: string): number | undefined {
  const m = DURATION.exec(s)
  if (m === null) return undefined
  return Number(m[1]) * DURATION_UNIT_MS[m[2] as keyof typeof DURATION_UNIT_MS]
}

function parseIsoDate (s: string): Date | undefined {
  const m = ISO_DATE.exec(s)
  if (m === null) return undefined
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((x) => Number(x ?? 0)) as [number, number, number, number, number, number]
  const check = new Date(Date.UTC(year, month - 1, day))
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return undefined
  if (hour > 23 || minute > 59 || second > 59) return undefined
  const ms = Date.parse(s.replace(/[tz]/g, (c) => c.toUpperCase()))
  return Number.isNaN(ms) ? undefined : new Date(ms)
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) &&
    !(value instanceof Uint8Array) && !(value instanceof Map) && !(value instanceof Set)
}

function describe (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (value instanceof Date) return 'a date'
  if (typeof value === 'string') {
    if (isSpokeToken(value)) return 'a spoke token (secret not shown)'
    return value.length > 60 ? `${JSON.stringify(value.slice(0, 60))}…` : JSON.stringify(value)
  }
  if (typeof value === 'object') return 'a mapping'
  return `${typeof value} ${String(value)}`
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !(value instanceof Date) && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/** Canonical JSON of a config, used to tell whether a reload changed anything. @internal */
export function spokesConfigFingerprint (config: SpokesConfig): string {
  return JSON.stringify(config)
}
