/**
 * The agent's upstream reads go into the process's shared ReadBufferPool (many agents in one process
 * keep one set of free buffers), and the bytes still cross the tunnel exactly.
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { describe, expect, test } from 'vitest'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import type { CreatedSpokeToken, SpokesConfig } from '@spokelink/auth'
import { sharedReadBufferPool } from '@spokelink/protocol'
import { createLogCapture, freePort, sha256Hex } from '@spokelink/testkit'
import { echoUpstream, startAgent, startExitNode } from './in-process-tunnel.js'

const logs = createLogCapture()

function spokesConfig (token: CreatedSpokeToken, dataPort: number): SpokesConfig {
  return parseSpokesConfig([
    'spokes:',
    '  - name: pool-spoke',
    `    tokens: [{id: "${token.id}", sha256: "${token.sha256}"}]`,
    '    ports:',
    `      - {upstream: echo, listen: "127.0.0.1:${dataPort}"}`,
    '',
  ].join('\n'), 'test')
}

/** Sends `payload` to the data-plane port, half-closes, and resolves with everything that came back. */
async function echoThrough (port: number, payload: Buffer): Promise<Buffer> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  socket.end(payload)
  await once(socket, 'end')
  socket.destroy()
  return Buffer.concat(chunks)
}

describe('agent upstream reads', () => {
  test('an agent without readBuffers reads its upstream into the process\'s shared pool; 4 MiB echo back sha256-exact', async () => {
    const token = createSpokeToken()
    const dataPort = await freePort()
    const { url } = await startExitNode(spokesConfig(token, dataPort), logs.logger('exit-node'))
    const echoPort = await echoUpstream()
    const pool = sharedReadBufferPool()
    const readsBefore = pool.allocatedCount + pool.reusedCount
    await startAgent({ server: url, token: token.token, upstreams: [{ name: 'echo', host: '127.0.0.1', port: echoPort }] }, logs.logger('agent'))
    const payload = randomBytes(4 * 1024 * 1024)
    const echoed = await echoThrough(dataPort, payload)
    expect({ sha256: sha256Hex(echoed), bytes: echoed.length }).toEqual({ sha256: sha256Hex(payload), bytes: payload.length })
    // Every upstream read took a buffer from the shared pool (4 MiB is at least 64 reads of 64 KiB).
    expect(pool.allocatedCount + pool.reusedCount - readsBefore).toBeGreaterThanOrEqual(64)
  })
})
