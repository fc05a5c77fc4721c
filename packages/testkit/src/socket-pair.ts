import { once } from 'node:events'
import net from 'node:net'

/**
 * Two ends of one real TCP connection on 127.0.0.1: `[dialed, accepted]`; the listener is closed again.
 * With `allowHalfOpen`, an end that receives FIN keeps its writable side open until it ends it itself.
 */
export async function socketPair (options: { allowHalfOpen?: boolean } = {}): Promise<[net.Socket, net.Socket]> {
  const allowHalfOpen = options.allowHalfOpen ?? false
  const server = net.createServer({ allowHalfOpen })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const accepted = once(server, 'connection')
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen })
  await once(socket, 'connect')
  const [theirs] = await accepted as [net.Socket]
  server.close()
  return [socket, theirs]
}
