import { describe, expect, test } from 'vitest'
import { SessionRegistry } from '@spokelink/exit-node'
import type { SpokeSession } from '@spokelink/exit-node'

function fakeSession (spoke: string, sessionId: string): SpokeSession {
  // The registry only reads identity fields; the mux is never touched here.
  return { spoke, sessionId, tokenId: 't', agent: 'a', ports: [], activeStreams: 0, disconnect: () => {} } as unknown as SpokeSession
}

describe('SessionRegistry', () => {
  test('online on the first session of a spoke, offline after its last', () => {
    const registry = new SessionRegistry()
    const events: string[] = []
    registry.on('spoke-online', (spoke) => events.push(`online ${spoke}`))
    registry.on('spoke-offline', (spoke) => events.push(`offline ${spoke}`))
    const a = fakeSession('orion', '1')
    const b = fakeSession('orion', '2')
    registry.add(a)
    registry.add(b)
    expect(registry.sessionsOf('orion')).toEqual([a, b])
    registry.remove(a)
    registry.remove(a)
    expect(registry.isConnected('orion')).toBe(true)
    registry.remove(b)
    expect(events).toEqual(['online orion', 'offline orion'])
    expect(registry.all()).toEqual([])
  })
})
