/**
 * A bare Node server, TCP or TLS, and nothing else: the floor under what one spokelink session costs the
 * exit-node. Reads `{ tls, certFile?, keyFile?, mode, afterFirstBytes? }` from the JSON file named by argv[2], prints one JSON
 * line `{"port":…}` once it listens and stays until stdin closes or a signal arrives. `echo` sends every byte
 * back; `receive` answers each `messageBytes` received with one byte, as an exit-node mostly receives (the
 * responses) and sends little (requests, credit). Each line on its stdin makes it print `process.memoryUsage()`.
 */
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import tls from 'node:tls'
import { createInterface } from 'node:readline'
import { startTlsAfterFirstBytes } from '@spokelink/exit-node'
import { listenLoopback } from '@spokelink/testkit'

export interface EchoServerConfig {
  tls: boolean
  certFile?: string
  keyFile?: string
  mode: 'echo' | 'receive'
  /** In `receive` mode, one byte goes back per this many received. */
  messageBytes: number
  /** TLS starts once the ClientHello has been read, as the exit-node does (`startTlsAfterFirstBytes`). */
  afterFirstBytes?: boolean
}

async function main (): Promise<void> {
  const path = process.argv[2]
  if (path === undefined) throw new Error('usage: echo-server.ts <config.json>')
  const config = JSON.parse(await readFile(path, 'utf8')) as EchoServerConfig
  const echo = (socket: net.Socket): void => {
    socket.on('error', () => { /* a client that goes away is not the subject */ })
    if (config.mode === 'echo') {
      socket.pipe(socket)
      return
    }
    let received = 0
    socket.on('data', (chunk: Buffer) => {
      const before = Math.floor(received / config.messageBytes)
      received += chunk.length
      const acks = Math.floor(received / config.messageBytes) - before
      if (acks > 0) socket.write(Buffer.alloc(acks, 1))
    })
  }
  const server = config.tls && config.certFile !== undefined && config.keyFile !== undefined
    ? tls.createServer({ cert: await readFile(config.certFile), key: await readFile(config.keyFile) }, echo)
    : net.createServer(echo)
  if (server instanceof tls.Server && config.afterFirstBytes === true) startTlsAfterFirstBytes(server, 30_000)
  const port = await listenLoopback(server)
  process.stdout.write(JSON.stringify({ port }) + '\n')
  const lines = createInterface({ input: process.stdin })
  lines.on('line', () => { process.stdout.write(JSON.stringify({ usage: process.memoryUsage() }) + '\n') })
  lines.on('close', () => { process.exit(0) })
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => { process.exit(0) })
}

await main()
