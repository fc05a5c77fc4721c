import { once } from 'node:events'
import net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { listenLoopback } from './listen-loopback.js'

/** A TCP relay in front of an upstream that keeps every byte clients sent it. */
export interface RecordingRelay {
  /** Port on 127.0.0.1. */
  readonly port: number
  /** `127.0.0.1:<port>`, to use as the agent's `--upstream` address. */
  readonly target: string
  /** Connections accepted so far. */
  readonly connections: number
  /** Everything clients sent, in order of arrival, as latin1 text (every byte maps to one character). */
  received: () => string
  /**
   * Every line of {@link RecordingRelay.received} that looks like an HTTP request line (`TOKEN target
   * HTTP/x.y`, any case), so a smuggled request in a body shows up too.
   */
  requestLines: () => string[]
  /** Stops listening and drops open connections; idempotent. */
  close: () => Promise<void>
}

const REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ \S+ HTTP\/\d\.\d$/

/**
 * Starts a byte-for-byte TCP relay on 127.0.0.1 (port 0) to `target` (`host:port`) that records what
 * clients send: the "upstream request log" of tests that must prove a request never reached the
 * upstream, whatever the upstream itself would have made of it.
 */
export async function startRecordingRelay (target: { host: string, port: number }): Promise<RecordingRelay> {
  const chunks: Buffer[] = []
  const sockets = new Set<net.Socket>()
  let connections = 0
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true })
    sockets.add(client).add(upstream)
    client.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    Promise.all([pipeline(client, upstream), pipeline(upstream, client)]).then(drop, drop)
  })
  const port = await listenLoopback(server)
  let closing: Promise<void> | undefined
  const received = (): string => Buffer.concat(chunks).toString('latin1')
  return {
    port,
    target: `127.0.0.1:${port}`,
    get connections () { return connections },
    received,
    requestLines: () => received().split(/\r?\n|\r/).filter((line) => REQUEST_LINE.test(line)),
    close: async () => {
      closing ??= (async () => {
        const closed = once(server, 'close')
        server.close()
        for (const socket of sockets) socket.destroy()
        await closed
      })()
      await closing
    },
  }
}
