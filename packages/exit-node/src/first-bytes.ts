import type { Socket } from 'node:net'

/**
 * Resolves once `socket` has bytes to read, has ended or closed, or `holdMs` passed, whichever is first;
 * nothing is consumed. A client that speaks first (HTTP) then opens its stream with the SYN, the header
 * and its request in one message; one that waits for the server (SMTP, MySQL) is held `holdMs` at most.
 */
export async function waitForFirstBytes (socket: Socket, holdMs: number): Promise<void> {
  if (socket.readableLength > 0 || socket.readableEnded || socket.destroyed) return
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      socket.off('readable', done)
      socket.off('close', done)
      resolve()
    }
    const timer = setTimeout(done, holdMs)
    socket.once('readable', done)
    socket.once('close', done)
  })
}
