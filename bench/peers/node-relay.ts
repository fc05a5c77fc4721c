/**
 * The least a Node process can do to forward TCP: accept, dial the target, `pipe()` both ways. Two of them in a
 * row (entry → second hop → upstream) are Node's own floor for a tunnel of two Node processes, with no framing,
 * no multiplexing and no crypto. `node --import tsx node-relay.ts <bulkTarget> <httpTarget>` listens on two
 * loopback ports 0 and prints `{"bulkPort":…,"httpPort":…}`.
 */
import { connect, createServer } from 'node:net'
import type { AddressInfo } from 'node:net'

async function relayTo (targetPort: number): Promise<number> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const target = connect({ host: '127.0.0.1', port: targetPort, noDelay: true, allowHalfOpen: true })
    client.pipe(target)
    target.pipe(client)
    client.on('error', () => { target.destroy() })
    target.on('error', () => { client.destroy() })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return (server.address() as AddressInfo).port
}

const [bulkTarget, httpTarget] = process.argv.slice(2).map(Number)
if (bulkTarget === undefined || httpTarget === undefined || !(bulkTarget > 0) || !(httpTarget > 0)) {
  process.stderr.write('usage: node-relay.ts <bulk target port> <http target port>\n')
  process.exit(2)
}
process.stdout.write(`${JSON.stringify({ bulkPort: await relayTo(bulkTarget), httpPort: await relayTo(httpTarget) })}\n`)
process.stdin.resume()
process.stdin.on('end', () => { process.exit(0) })
