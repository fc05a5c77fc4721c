import type { Server } from 'node:net'

/**
 * Makes `server` listen on port 0 of a loopback address and resolves with the port the OS picked.
 *
 * Works for `net.Server`, `http.Server`, `https.Server` and anything else built on `net.Server`.
 *
 * @param host - address to bind; tests use `127.0.0.1`, never `localhost`.
 * @throws the server's `error` (for example `EADDRNOTAVAIL`) if it cannot listen.
 */
export async function listenLoopback (server: Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening)
      reject(err)
    }
    const onListening = (): void => {
      server.off('error', onError)
      resolve()
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen(0, host)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') {
    throw new Error(`listenLoopback: expected a TCP address after listening on ${host}:0, got ${String(address)}`)
  }
  return address.port
}
