import { once } from 'node:events'
import net from 'node:net'

/** Two ends of one real TCP connection on 127.0.0.1: `[dialed, accepted]`; the listener is closed again. */
export async function socketPair (): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const accepted = once(server, 'connection')
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const [theirs] = await accepted as [net.Socket]
  server.close()
  return [socket, theirs]
}
