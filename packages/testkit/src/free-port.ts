import { createServer } from 'node:net'
import { listenLoopback } from './listen-loopback.js'

/**
 * Finds a TCP port that is free on 127.0.0.1 right now: binds port 0, reads the port, closes.
 *
 * This is racy: another process may take the port before the caller binds it. Use it only for child
 * processes that cannot listen on port 0 and report the port back (Prometheus, for one). Anything that
 * can should listen on port 0 itself ({@link listenLoopback}, or `--listen 127.0.0.1:0` and the
 * `listening` log line).
 */
export async function freePort (): Promise<number> {
  const server = createServer()
  const port = await listenLoopback(server)
  await new Promise<void>((resolve, reject) => {
    server.close((err) => { if (err) reject(err); else resolve() })
  })
  return port
}
