import { createServer } from 'node:net'
import { describe, expect, test } from 'vitest'
import { ephemeralPortRange, freePort } from '../src/index.js'

describe('freePort', () => {
  test('gives ports below the ephemeral range, which no listen(0) can be handed, and each can be bound', async () => {
    const { low } = await ephemeralPortRange()
    const ports = await Promise.all(Array.from({ length: 20 }, async () => freePort()))
    for (const port of ports) expect(port).toBeLessThan(low)
    for (const port of ports) expect(port).toBeGreaterThanOrEqual(10_000)
    const server = createServer()
    await new Promise<void>((resolve) => { server.listen(ports[0], '127.0.0.1', resolve) })
    expect(server.address()).toMatchObject({ port: ports[0] })
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  })
})
