import { once } from 'node:events'
import { describe, expect, test } from 'vitest'
import { socketPair, waitFor } from '@spokelink/testkit'
import { TrafficMeter } from '../src/traffic-meter.js'

describe('TrafficMeter', () => {
  test('counts an open connection at each flush, only the growth, and once more when it ends', async () => {
    const [server, client] = await socketPair()
    const deltas: Array<[string, string, number]> = []
    const meter = new TrafficMeter((spoke, direction, bytes) => { deltas.push([spoke, direction, bytes]) })
    const untrack = meter.track(server, 'alpha')
    client.write(Buffer.alloc(1000))
    await waitFor(() => server.bytesRead === 1000, { what: '1000 bytes read' })
    server.write(Buffer.alloc(300))
    meter.flush()
    meter.flush()
    expect(deltas).toEqual([['alpha', 'in', 1000], ['alpha', 'out', 300]])
    client.write(Buffer.alloc(24))
    await waitFor(() => server.bytesRead === 1024, { what: '24 more bytes read' })
    untrack()
    meter.flush()
    expect(deltas).toEqual([['alpha', 'in', 1000], ['alpha', 'out', 300], ['alpha', 'in', 24]])
    expect(meter.totalOf('alpha')).toEqual({ in: 1024, out: 300 })
    meter.forget('alpha')
    expect(meter.totalOf('alpha')).toEqual({ in: 0, out: 0 })
    client.destroy()
    server.destroy()
    await once(server, 'close')
  })
})
