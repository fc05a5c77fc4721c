import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { describe, expect, onTestFinished, test } from 'vitest'
import { Registry } from 'prom-client'
import { createLogCapture, listenLoopback, metricValue } from '@spokelink/testkit'
import { FrontDoor } from '../src/front-door.js'

const OPTIONS = {
  maxUnauthenticatedConnections: 10,
  maxUnauthenticatedPerSource: 10,
  failedAuthBurst: 10,
  failedAuthRefillMs: 1000,
  maxFailedAuthSources: 10,
  logSampleIntervalMs: 60_000,
  refusalCloseTimeoutMs: 1000,
  unauthenticatedDeadlineMs: 50,
}

describe('FrontDoor', () => {
  test('a connection is counted as timed out once when Node\'s periodic check reports it after the deadline closed it', async () => {
    const registry = new Registry()
    const logs = createLogCapture()
    const door = new FrontDoor(OPTIONS, { logger: logs.logger('exit-node'), registry, nowMs: () => 0 })
    // Node's own check (headersTimeout 60 s by default) never fires here; the test plays it.
    const server = http.createServer()
    door.attach(server)
    const serverSockets: net.Socket[] = []
    server.on('connection', (socket: net.Socket) => {
      serverSockets.push(socket)
      // On a loaded event loop Node's check can run in the same timers phase as the deadline, right after it:
      // the socket is destroyed but 'close' has not removed it from Node's list, which reports it as timed out.
      const destroy = socket.destroy.bind(socket)
      let reported = false
      socket.destroy = (err?: Error) => {
        destroy(err)
        if (!reported) {
          reported = true
          server.emit('clientError', Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket)
        }
        return socket
      }
    })
    const port = await listenLoopback(server)
    onTestFinished(async () => {
      server.close()
      await once(server, 'close')
    })

    const client = net.connect({ host: '127.0.0.1', port })
    client.on('error', () => { /* closed by the front door */ })
    await once(client, 'close', { signal: AbortSignal.timeout(10_000) })
    const [accepted] = serverSockets
    if (accepted === undefined) throw new Error('the server saw no connection')
    if (!accepted.closed) await once(accepted, 'close', { signal: AbortSignal.timeout(10_000) })

    const metrics = await registry.metrics()
    expect(metricValue(metrics, 'spokelink_control_timeouts_total', { phase: 'headers' })).toBe(1)
    expect(metricValue(metrics, 'spokelink_control_unauthenticated_connections')).toBe(0)
    expect(logs.entries().filter((entry) => entry.msg === 'connection timed out').map((entry) => [entry.code, entry.phase]))
      .toEqual([['SLK_ERR_EXIT_HANDSHAKE_TIMEOUT', 'headers']])
  })
})
