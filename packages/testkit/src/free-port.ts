import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { randomInt } from 'node:crypto'
import { listenLoopback } from './listen-loopback.js'

/** Below the kernel's ephemeral range; well above the ports daemons on a test machine use. */
const LOWEST_PORT = 10_000
const ATTEMPTS = 50

/** The kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where every `listen(0)` gets its port. */
export async function ephemeralPortRange (): Promise<{ low: number, high: number }> {
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999')
  const [low = 32768, high = 60999] = text.trim().split(/\s+/).map(Number)
  return { low, high }
}

async function bindable (port: number): Promise<boolean> {
  const server = createServer()
  const listened = await new Promise<boolean>((resolve) => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { resolve(true) })
  })
  if (listened) await new Promise<void>((resolve, reject) => { server.close((err) => { if (err) reject(err); else resolve() }) })
  return listened
}

/**
 * Finds a TCP port that is free on 127.0.0.1 right now, for child processes that cannot listen on port 0 and
 * report the port back (Prometheus, for one), and for ports a test must know before the listener exists.
 *
 * The port is drawn at random from below the kernel's ephemeral range and checked by binding it. Below that
 * range matters: a port read from `listen(0)` and closed again goes back to the very pool every later
 * `listen(0)` draws from, and an exit-node's admin listener on port 0 once took the data-plane port a test had
 * just been given (EADDRINUSE). Another test drawing the same random port in the meantime is still possible,
 * one in ~20,000. Anything that can should listen on port 0 itself ({@link listenLoopback}, or
 * `--listen 127.0.0.1:0` and the `listening` log line).
 */
export async function freePort (): Promise<number> {
  const { low } = await ephemeralPortRange()
  if (low > LOWEST_PORT + 1000) {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const port = randomInt(LOWEST_PORT, low)
      if (await bindable(port)) return port
    }
  }
  // No room below the ephemeral range (or all taken): the old way, racy against listen(0).
  const server = createServer()
  const port = await listenLoopback(server)
  await new Promise<void>((resolve, reject) => { server.close((err) => { if (err) reject(err); else resolve() }) })
  return port
}
