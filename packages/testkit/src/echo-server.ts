import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { listenLoopback } from './listen-loopback.js'

/** A running {@link startEchoServer}. */
export interface EchoServer {
  readonly port: number
  /** Connections accepted so far. */
  readonly connections: number
  /** Destroys every accepted socket and stops listening; idempotent. */
  close: () => Promise<void>
}

/**
 * A TCP upstream on 127.0.0.1:0 that echoes every byte and half-closes after its client did
 * (`allowHalfOpen`), the usual far end of a tunnel test.
 */
export async function startEchoServer (): Promise<EchoServer> {
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    connections++
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    // A reset stream (the tunnel closing when a test ends) is not this server's failure: tests
    // assert on what their clients received.
    socket.on('error', () => {})
    pipeline(socket, socket).catch(() => { /* as above */ })
  })
  const port = await listenLoopback(server)
  let closing: Promise<void> | undefined
  return {
    port,
    get connections () { return connections },
    close: async () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        for (const socket of sockets) socket.destroy()
      })
      await closing
    },
  }
}
