import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runProcess } from '@spokelink/testkit'
import { pickNamedPorts } from '../lib/ports.js'
import { startChildren } from '../lib/child-group.js'
import { waitUntilAccepting, waitUntilForwardingBoth } from '../lib/probe.js'
import { findBinary } from './find-binary.js'
import type { StartedSystem, SystemContext, SystemSpec } from './system.js'

/** Why frp is usually missing here: the Go module proxy refuses the module. */
const FRP_MISSING = 'frps/frpc not on PATH or in ~/go/bin; `go install github.com/fatedier/frp/cmd/frps@v0.61.1` fails here: the Go module proxy answers 403'

function frpsToml (bindPort: number, token: string): string {
  return [
    'bindAddr = "127.0.0.1"',
    `bindPort = ${bindPort}`,
    'proxyBindAddr = "127.0.0.1"',
    'auth.method = "token"',
    `auth.token = "${token}"`,
    'transport.tls.force = true',
    'log.to = "console"',
    'log.level = "warn"',
    '',
  ].join('\n')
}

function frpcToml (serverPort: number, token: string, forwards: Array<{ name: string, remotePort: number, localPort: number }>): string {
  const lines = [
    'serverAddr = "127.0.0.1"',
    `serverPort = ${serverPort}`,
    'auth.method = "token"',
    `auth.token = "${token}"`,
    'transport.tls.enable = true',
    'log.to = "console"',
    'log.level = "warn"',
  ]
  for (const forward of forwards) {
    lines.push('', '[[proxies]]', `name = "${forward.name}"`, 'type = "tcp"', 'localIP = "127.0.0.1"',
      `localPort = ${forward.localPort}`, `remotePort = ${forward.remotePort}`)
  }
  return lines.join('\n') + '\n'
}

async function startFrp (context: SystemContext): Promise<StartedSystem> {
  const frps = await findBinary('frps')
  const frpc = await findBinary('frpc')
  if (frps === undefined || frpc === undefined) return { skipped: FRP_MISSING }
  const token = randomBytes(16).toString('hex')
  const { serverPort, bulkPort, httpPort } = await pickNamedPorts(['serverPort', 'bulkPort', 'httpPort'])
  const frpsFile = join(context.dir, 'frps.toml')
  const frpcFile = join(context.dir, 'frpc.toml')
  await writeFile(frpsFile, frpsToml(serverPort, token))
  await writeFile(frpcFile, frpcToml(serverPort, token, [
    { name: 'bulk', remotePort: bulkPort, localPort: context.upstream.bulkPort },
    { name: 'http', remotePort: httpPort, localPort: context.upstream.httpPort },
  ]))
  return startChildren(async (group) => {
    const server = group.add(runProcess(frps, ['-c', frpsFile], { name: 'frps' }))
    await group.until(waitUntilAccepting(serverPort, 'frps'))
    const client = group.add(runProcess(frpc, ['-c', frpcFile], { name: 'frpc' }))
    await group.until(waitUntilForwardingBoth({ bulkPort, httpPort }, 'frp'))
    return { bulkPort, httpPort, pids: { frps: server.pid, frpc: client.pid } }
  })
}

/** frps + frpc with a TCP proxy per upstream and TLS between them. */
export const frp: SystemSpec = {
  name: 'frp',
  kind: 'peer',
  bulk: true,
  start: startFrp,
}
