import { randomBytes } from 'node:crypto'
import { runProcess } from '@spokelink/testkit'
import { pickNamedPorts } from '../lib/ports.js'
import { startChildren } from '../lib/child-group.js'
import { waitUntilAccepting, waitUntilForwardingBoth } from '../lib/probe.js'
import { findBinary } from './find-binary.js'
import type { StartedSystem, SystemContext, SystemSpec } from './system.js'

const CHISEL_MISSING = 'Go module proxy refuses github.com/jpillora/chisel: 403'

async function startChisel (context: SystemContext): Promise<StartedSystem> {
  const chisel = await findBinary('chisel')
  if (chisel === undefined) return { skipped: CHISEL_MISSING }
  const auth = `bench:${randomBytes(12).toString('hex')}`
  const { serverPort, bulkPort, httpPort } = await pickNamedPorts(['serverPort', 'bulkPort', 'httpPort'])
  return startChildren(async (group) => {
    const server = group.add(runProcess(chisel, [
      'server', '--host', '127.0.0.1', '--port', String(serverPort), '--reverse',
      '--tls-cert', context.tls.certFile, '--tls-key', context.tls.keyFile,
    ], { name: 'chisel server', env: { AUTH: auth } }))
    await group.until(waitUntilAccepting(serverPort, 'chisel server'))
    const client = group.add(runProcess(chisel, [
      'client', '--tls-ca', context.tls.caFile, `https://127.0.0.1:${serverPort}`,
      `R:127.0.0.1:${bulkPort}:127.0.0.1:${context.upstream.bulkPort}`,
      `R:127.0.0.1:${httpPort}:127.0.0.1:${context.upstream.httpPort}`,
    ], { name: 'chisel client', env: { AUTH: auth } }))
    await group.until(waitUntilForwardingBoth({ bulkPort, httpPort }, 'chisel'))
    return { bulkPort, httpPort, pids: { server: server.pid, client: client.pid } }
  })
}

/** chisel server --reverse over wss (TLS with the bench CA) and a chisel client with two R: remotes. */
export const chisel: SystemSpec = {
  name: 'chisel',
  kind: 'peer',
  bulk: true,
  start: startChisel,
}
