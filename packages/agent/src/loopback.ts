import dns from 'node:dns'
import type { LookupAddress, LookupOptions } from 'node:dns'
import net from 'node:net'
import type { LookupFunction } from 'node:net'
import { AgentError } from './errors.js'

const LOOPBACK = new net.BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/** The one name the agent resolves before allowing plain ws:// to it; every other name needs wss:// or `insecure`. */
export const LOOPBACK_NAME = 'localhost'

/**
 * True when `address` is an IP literal in 127.0.0.0/8 or `::1` (IPv4-mapped forms included; brackets allowed).
 * Names are never loopback here, whatever they look like: `127.attacker.example` is a DNS name.
 */
export function isLoopbackAddress (address: string): boolean {
  const ip = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address
  const family = net.isIP(ip)
  if (family === 0) return false
  return LOOPBACK.check(ip, family === 4 ? 'ipv4' : 'ipv6')
}

/** Resolves every address of a name (the shape of `dns.lookup` with `all: true`). */
export type ResolveAllFunction = (hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void

const resolveWithSystem: ResolveAllFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, callback)
}

/**
 * A `lookup` for `net.connect` that connects only when every address the name resolves to is loopback, so
 * `ws://localhost` cannot leave the machine through an /etc/hosts entry or a resolver that says otherwise.
 * The check and the connect use the same answer (no second resolution in between).
 * @param resolveAll - the resolver; `dns.lookup` by default
 */
export function createLoopbackOnlyLookup (resolveAll: ResolveAllFunction = resolveWithSystem): LookupFunction {
  return (hostname, options, callback) => {
    resolveAll(hostname, options, (err, addresses) => {
      if (err !== null) {
        callback(err, '')
        return
      }
      const outside = addresses.find((entry) => !isLoopbackAddress(entry.address))
      const first = addresses[0]
      if (outside !== undefined || first === undefined) {
        const found = outside === undefined ? 'no address' : outside.address
        callback(new AgentError('SLK_ERR_AGENT_INSECURE', `--server: refusing plain ws:// to ${hostname}: it resolves to ${found}, not only loopback; use wss://, ws://127.0.0.1, or pass --insecure`), '')
        return
      }
      if (options.all === true) callback(null, addresses)
      else callback(null, first.address, first.family)
    })
  }
}
