import type { AddressInfo, Server } from 'node:net'
import { ExitNodeError } from './errors.js'

/**
 * Listens on `host:port`, naming `what` and the address in the error when that fails: the one
 * listen-and-await of the exit-node (control, admin and data-plane listeners).
 * @throws ExitNodeError SLK_ERR_EXIT_LISTEN with the errno as `cause`
 */
export async function bindServer (server: Server, host: string, port: number, what?: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'is already in use' : err.code === 'EADDRNOTAVAIL' ? 'is not an address of this host' : `failed (${err.code ?? err.message})`
      reject(new ExitNodeError('SLK_ERR_EXIT_LISTEN', `${what === undefined ? '' : `${what}: `}cannot listen on ${host}:${port}: the address ${why}`, { cause: err }))
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

/** The address a server listens on. @throws ExitNodeError SLK_ERR_EXIT_LISTEN when it does not listen */
export function boundAddress (server: Server): AddressInfo {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new ExitNodeError('SLK_ERR_EXIT_LISTEN', 'exit-node is not listening')
  return address
}
