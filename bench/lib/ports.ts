import { randomInt } from 'node:crypto'
import { createServer } from 'node:net'

/**
 * Ports are picked below the kernel's ephemeral range (32768–60999 by default), so a port picked now and bound
 * later by a child process cannot meanwhile become the source port of one of the benchmark's many outgoing
 * connections.
 */
const FIRST_PORT = 20_000
const LAST_PORT = 32_000

async function isFree (port: number): Promise<boolean> {
  const server = createServer()
  return new Promise<boolean>((resolve) => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/**
 * Returns `count` distinct ports that are free on 127.0.0.1 now, from a random start below the ephemeral range.
 * @throws Error when fewer than `count` are free.
 */
export async function pickFreePorts (count: number): Promise<number[]> {
  const span = LAST_PORT - FIRST_PORT
  const start = randomInt(span)
  const ports: number[] = []
  for (let i = 0; i < span && ports.length < count; i++) {
    const port = FIRST_PORT + ((start + i) % span)
    if (await isFree(port)) ports.push(port)
  }
  if (ports.length < count) throw new Error(`pickFreePorts: only ${ports.length} of ${count} ports free in ${FIRST_PORT}-${LAST_PORT}`)
  return ports
}

/** {@link pickFreePorts} with a name per port: `pickNamedPorts(['bulk', 'http'])` → `{ bulk, http }`. */
export async function pickNamedPorts<K extends string> (names: readonly K[]): Promise<Record<K, number>> {
  const ports = await pickFreePorts(names.length)
  const named = {} as Record<K, number>
  names.forEach((name, i) => { named[name] = ports[i] ?? NaN })
  return named
}
