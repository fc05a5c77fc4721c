/**
 * The least a Node process can do to forward TCP: accept, dial the target, `pipe()` both ways. Two of them in a
 * row (entry → second hop → upstream) are Node's own floor for a tunnel of two Node processes, with no framing,
 * no multiplexing and no crypto. `node --import tsx node-relay.ts <bulkTarget> <httpTarget>` listens on two
 * loopback ports 0 and prints `{"bulkPort":…,"httpPort":…}`.
 *
 * With `--listen-tls <cert>,<key>` it accepts TLS instead of TCP; with `--connect-tls <ca>` it dials its targets
 * over TLS (verifying them against that CA): the two together make Node's TLS floor, a relay pair with TLS
 * between the hops, one TLS connection per forwarded connection.
 */
import { readFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'
import { connect as connectTls, createServer as createTlsServer } from 'node:tls'
import { parseArgs } from 'node:util'

interface RelayTls {
  listen?: { cert: Buffer, key: Buffer }
  connectCa?: Buffer
}

function dial (targetPort: number, tls: RelayTls): Socket {
  if (tls.connectCa === undefined) return connect({ host: '127.0.0.1', port: targetPort, noDelay: true, allowHalfOpen: true })
  const socket = connectTls({ host: '127.0.0.1', port: targetPort, ca: tls.connectCa, servername: 'localhost' })
  socket.setNoDelay(true)
  return socket
}

async function relayTo (targetPort: number, tls: RelayTls): Promise<number> {
  const onClient = (client: Socket): void => {
    client.setNoDelay(true)
    const target = dial(targetPort, tls)
    client.pipe(target)
    target.pipe(client)
    client.on('error', () => { target.destroy() })
    target.on('error', () => { client.destroy() })
  }
  const server: Server = tls.listen === undefined
    ? createServer({ noDelay: true, allowHalfOpen: true }, onClient)
    : createTlsServer({ ...tls.listen, allowHalfOpen: true }, onClient)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return (server.address() as AddressInfo).port
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'listen-tls': { type: 'string' }, 'connect-tls': { type: 'string' } } })
const [bulkTarget, httpTarget] = positionals.map(Number)
if (bulkTarget === undefined || httpTarget === undefined || !(bulkTarget > 0) || !(httpTarget > 0)) {
  process.stderr.write('usage: node-relay.ts <bulk target port> <http target port> [--listen-tls cert,key] [--connect-tls ca]\n')
  process.exit(2)
}
const tls: RelayTls = {}
if (values['listen-tls'] !== undefined) {
  const [certFile = '', keyFile = ''] = values['listen-tls'].split(',')
  tls.listen = { cert: readFileSync(certFile), key: readFileSync(keyFile) }
}
if (values['connect-tls'] !== undefined) tls.connectCa = readFileSync(values['connect-tls'])
process.stdout.write(`${JSON.stringify({ bulkPort: await relayTo(bulkTarget, tls), httpPort: await relayTo(httpTarget, tls) })}\n`)
process.stdin.resume()
process.stdin.on('end', () => { process.exit(0) })
