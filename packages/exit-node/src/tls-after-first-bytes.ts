import type { Socket } from 'node:net'
import type { Server as TlsServer } from 'node:tls'

/** Node's own code for a TLS handshake that took too long, so the front door counts this wait as the same phase. */
const HANDSHAKE_TIMEOUT_CODE = 'ERR_TLS_HANDSHAKE_TIMEOUT'

type ConnectionListener = (this: TlsServer, socket: Socket) => void

/**
 * Makes `server` start TLS on an accepted socket only once the client's first bytes (its ClientHello) have been
 * read, instead of at accept.
 *
 * Why: Node's TLS keeps the encrypted bytes it reads in a ring of native buffers (`NodeBIO`) for the socket's whole
 * life, and sizes the ring's first buffer from the first read: libuv suggests 64 KiB for a read from the socket,
 * so a server-side TLS socket carries a 64 KiB buffer that a session receiving scrape responses fills
 * completely. Bytes already read in JavaScript reach the TLS socket through `receive(chunk)` instead (Node's path
 * for a socket with buffered data), which sizes that first buffer to the chunk (at least 1 KiB); later buffers
 * are Node's 16 KiB. README "Fleet": ~50–65 KiB less RSS per wss session that receives bursts, but every socket read
 * then gets at most what is left of a 16 KiB buffer (4.7× the reads for a bulk receive), ~15 % more CPU per byte
 * received: the exit-node uses it only with `tlsLeanBuffers`.
 *
 * A socket that sends nothing gets the same `handshakeTimeoutMs` and the same error (a `tlsClientError` with
 * `ERR_TLS_HANDSHAKE_TIMEOUT`, which an https server reports as `clientError`); one that ends, fails or is
 * destroyed (by the front door's caps) before its first byte is closed without ever becoming a TLS socket.
 * Call before anything else listens for `connection`: it replaces the TLS server's own listener there.
 */
export function startTlsAfterFirstBytes (server: TlsServer, handshakeTimeoutMs: number): void {
  const listeners = server.listeners('connection')
  const [startTls] = listeners
  if (listeners.length !== 1 || startTls === undefined) throw new TypeError(`expected only the TLS server's own connection listener, found ${listeners.length}`)
  server.removeListener('connection', startTls as ConnectionListener)
  server.prependListener('connection', (socket: Socket) => {
    const timer = setTimeout(() => {
      done()
      const err: NodeJS.ErrnoException = new Error('TLS handshake timeout: no ClientHello')
      err.code = HANDSHAKE_TIMEOUT_CODE
      if (!server.emit('tlsClientError', err, socket)) socket.destroy()
    }, handshakeTimeoutMs)
    const onReadable = (): void => {
      done()
      // No byte (the peer ended) or a socket another listener already closed: nothing to start TLS on.
      if (socket.destroyed || socket.readableLength === 0) {
        socket.destroy()
        return
      }
      ;(startTls as ConnectionListener).call(server, socket)
    }
    const onError = (): void => {
      done()
      socket.destroy()
    }
    const done = (): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('error', onError)
      socket.off('close', onError)
    }
    socket.on('readable', onReadable)
    socket.on('error', onError)
    socket.on('close', onError)
  })
}
