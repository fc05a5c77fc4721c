import { fileURLToPath } from 'node:url'
import { runProcess } from '@spokelink/testkit'
import type { RunningProcess } from '@spokelink/testkit'
import { startChildren } from '../lib/child-group.js'
import type { ChildGroup } from '../lib/child-group.js'
import { waitUntilForwardingBoth } from '../lib/probe.js'
import type { UpstreamPorts, SystemContext, SystemSpec, StartedSystem } from './system.js'

const RELAY = fileURLToPath(new URL('../peers/node-relay.ts', import.meta.url))

async function startHop (group: ChildGroup, target: UpstreamPorts, name: string, tlsArgs: readonly string[]): Promise<{ child: RunningProcess, ports: UpstreamPorts }> {
  const child = group.add(runProcess(process.execPath, ['--import', 'tsx', RELAY, String(target.bulkPort), String(target.httpPort), ...tlsArgs], { name }))
  const line = await child.waitForLog((entry) => typeof entry.bulkPort === 'number', { what: `${name} to listen`, timeoutMs: 20_000 })
  return { child, ports: { bulkPort: Number(line.bulkPort), httpPort: Number(line.httpPort) } }
}

async function startRelayPair ({ upstream, tls }: SystemContext, withTls: boolean): Promise<StartedSystem> {
  return startChildren(async (group) => {
    const second = await startHop(group, upstream, 'node relay (hop 2)', withTls ? ['--listen-tls', `${tls.certFile},${tls.keyFile}`] : [])
    const entry = await startHop(group, second.ports, 'node relay (hop 1)', withTls ? ['--connect-tls', tls.caFile] : [])
    await group.until(waitUntilForwardingBoth(entry.ports, 'the Node relay pair'))
    return { ...entry.ports, pids: { hop1: entry.child.pid, hop2: second.child.pid } }
  })
}

/**
 * Two plain Node relays in a row (see `peers/node-relay.ts`): what any tunnel made of two Node processes costs
 * before it frames, multiplexes or encrypts anything. Not a peer a user would pick; a floor to read ours against.
 */
export const nodeRelayFloor: SystemSpec = {
  name: 'Node relay ×2 (floor)',
  kind: 'baseline',
  bulk: true,
  start: async (context) => startRelayPair(context, false),
}

/** The same pair with TLS between the hops (the bench CA): Node's floor for an encrypted tunnel. */
export const nodeRelayTlsFloor: SystemSpec = {
  name: 'Node relay ×2 + TLS (TLS floor)',
  kind: 'baseline',
  bulk: true,
  start: async (context) => startRelayPair(context, true),
}
