import net from 'node:net'
import { isUpstreamName } from '@spokelink/protocol'
import type { ReadBufferPool } from '@spokelink/protocol'
import { AgentError } from './errors.js'

/** A named upstream the agent may dial; the exit-node only ever names it, never gives an address. */
export interface Upstream {
  name: string
  host: string
  port: number
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/

/**
 * Parses `NAME=HOST:PORT` (e.g. `prometheus=prometheus-server:9090`).
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION naming the bad part
 */
export function parseUpstreamSpec (spec: string): Upstream {
  const eq = spec.indexOf('=')
  const name = eq < 0 ? '' : spec.slice(0, eq)
  const match = HOST_PORT.exec(spec.slice(eq + 1))
  if (!isUpstreamName(name)) {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `upstream "${spec}": expected NAME=HOST:PORT with NAME like "prometheus" (lowercase letters, digits, - and _)`)
  }
  const host = match?.[1]
  const port = Number(match?.[2])
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `upstream "${spec}": expected NAME=HOST:PORT with a port from 1 to 65535`)
  }
  return { name, host: host.replace(/^\[(.*)\]$/, '$1'), port }
}

/**
 * Dials an upstream with a deadline; resolves once connected. With `readBufferPool` the socket reads into
 * that pool's reused buffers (what it reads must then be written on through a WebSocket duplex, which hands
 * them back; anything else just leaves them to the garbage collector).
 * @throws the socket error, or an Error after `timeoutMs`
 */
export async function dialUpstream (upstream: Upstream, options: { timeoutMs: number, signal?: AbortSignal, readBufferPool?: ReadBufferPool }): Promise<net.Socket> {
  const connectOptions = { host: upstream.host, port: upstream.port, allowHalfOpen: true, noDelay: true }
  const socket = options.readBufferPool === undefined ? net.connect(connectOptions) : options.readBufferPool.connect(connectOptions)
  return new Promise<net.Socket>((resolve, reject) => {
    const timer = setTimeout(() => { fail(new Error(`connect to ${upstream.host}:${upstream.port} timed out after ${options.timeoutMs}ms`)) }, options.timeoutMs)
    const onAbort = (): void => { fail(new Error('aborted')) }
    function cleanup (): void {
      clearTimeout(timer)
      socket.off('error', fail)
      options.signal?.removeEventListener('abort', onAbort)
    }
    function fail (err: Error): void {
      cleanup()
      socket.destroy()
      reject(err)
    }
    socket.once('error', fail)
    options.signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      cleanup()
      resolve(socket)
    })
  })
}
