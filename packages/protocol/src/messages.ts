import { ProtocolError } from './errors.js'
import { PROTOCOL_VERSION } from './version.js'

/** The agent's first message on the control stream. */
export interface Hello {
  version: number
  /** Free-form agent identity for logs (hostname, pod name); never a secret. */
  agent: string
  /** Names of the upstreams this agent was started with. */
  upstreams: string[]
  labels: Record<string, string>
  /** The agent's software version (`0.1.0`); older agents send none. */
  agentVersion?: string
}

/** A data-plane port the exit-node bound for this spoke. */
export interface GrantedPort {
  upstream: string
  host: string
  port: number
}

/** The exit-node's answer to a hello. */
export type Welcome =
  // clientCert: the spoke requires a client certificate (the agent asks for one on the control stream). Older agents
  // ignore the field; older exit-nodes never send it.
  //
  // hubServices: the exit-node accepts hub streams (agent-opened, `{hubService}` header) and names the hub services
  // this spoke may reach now. Its presence is the capability: an agent never opens a hub stream to an exit-node whose
  // welcome lacks it (older exit-nodes reset any stream an agent opens). The list is informational (the spokes file
  // is reloaded; each stream is checked when it opens).
  | { ok: true, spoke: string, ports: GrantedPort[], clientCert?: 'required', hubServices?: string[] }
  | { ok: false, code: string, error: string }

/** Most hub services a welcome may name (the spokes file allows no more per spoke). */
export const MAX_HUB_SERVICES = 16

/** Most labels a hello may carry; the exit-node keeps them per session. */
export const MAX_HELLO_LABELS = 32

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/

/** Whether a string is a valid upstream name (`prometheus`, `alertmanager-0`). */
export function isUpstreamName (value: string): boolean {
  return NAME.test(value)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * A peer-sent value as text for a message. Never `String(value)`: a parsed `{"toString": 1}` makes that throw a
 * TypeError instead of our typed error.
 */
export function printableValue (value: unknown): string {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return `${value}`
  return Array.isArray(value) ? 'an array' : 'an object'
}

function invalid (what: string): ProtocolError {
  return new ProtocolError('SLK_ERR_PROTO_HEADER_INVALID', `peer sent an invalid ${what}`)
}

function parseStringRecord (value: unknown, what: string): Record<string, string> {
  if (value === undefined) return {}
  if (!isRecord(value)) throw invalid(what)
  const out: Record<string, string> = {}
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') throw invalid(what)
    out[key] = entry
  }
  return out
}

/**
 * Validates a hello read from the wire.
 * @throws ProtocolError SLK_ERR_PROTO_VERSION_MISMATCH naming both versions, SLK_ERR_PROTO_HEADER_INVALID
 */
export function parseHello (value: unknown): Hello {
  if (!isRecord(value)) throw invalid('hello')
  if (value.version !== PROTOCOL_VERSION) {
    throw new ProtocolError('SLK_ERR_PROTO_VERSION_MISMATCH',
      `agent speaks protocol version ${printableValue(value.version)}; this exit-node speaks version ${PROTOCOL_VERSION}`)
  }
  const { agent, upstreams } = value
  if (typeof agent !== 'string' || agent.length > 253) throw invalid('hello.agent')
  if (!Array.isArray(upstreams) || upstreams.length > 64) throw invalid('hello.upstreams')
  const names: string[] = []
  for (const name of upstreams) {
    if (typeof name !== 'string' || !isUpstreamName(name)) throw invalid('hello.upstreams')
    names.push(name)
  }
  const { agentVersion } = value
  if (agentVersion !== undefined && (typeof agentVersion !== 'string' || agentVersion.length > 64)) throw invalid('hello.agentVersion')
  const labels = parseStringRecord(value.labels, 'hello.labels')
  if (Object.keys(labels).length > MAX_HELLO_LABELS) throw invalid('hello.labels')
  return { version: PROTOCOL_VERSION, agent, upstreams: names, labels, ...(agentVersion === undefined ? {} : { agentVersion }) }
}

/**
 * Validates a welcome read from the wire.
 * @throws ProtocolError SLK_ERR_PROTO_HEADER_INVALID
 */
export function parseWelcome (value: unknown): Welcome {
  if (!isRecord(value)) throw invalid('welcome')
  if (value.ok === false) {
    return { ok: false, code: printableValue(value.code), error: printableValue(value.error) }
  }
  if (value.ok !== true || typeof value.spoke !== 'string' || !Array.isArray(value.ports)) throw invalid('welcome')
  const ports: GrantedPort[] = []
  for (const port of value.ports) {
    if (!isRecord(port) || typeof port.upstream !== 'string' || typeof port.host !== 'string' || typeof port.port !== 'number') {
      throw invalid('welcome.ports')
    }
    ports.push({ upstream: port.upstream, host: port.host, port: port.port })
  }
  const welcome: Welcome = value.clientCert === 'required' ? { ok: true, spoke: value.spoke, ports, clientCert: 'required' } : { ok: true, spoke: value.spoke, ports }
  if (value.hubServices !== undefined) {
    const { hubServices } = value
    if (!Array.isArray(hubServices) || hubServices.length > MAX_HUB_SERVICES || !hubServices.every((name) => typeof name === 'string' && isUpstreamName(name))) {
      throw invalid('welcome.hubServices')
    }
    welcome.hubServices = hubServices as string[]
  }
  return welcome
}
