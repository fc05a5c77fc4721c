import { describe, expect, test } from 'vitest'
import { formatFleetTable, parseFleet } from '../src/fleet-table.js'

const ROW = { spoke: 'orion-aws', connected: true, sessions: 2, agentVersion: '0.1.0', rttSeconds: 0.0123, bytesIn: 1536, bytesOut: 10, lastSeen: '2026-12-01T17:00:00.000Z', tokenExpiry: null }

describe('spokelink status table', () => {
  test('aligned columns with units; never/none/- for what is unknown', () => {
    const idle = { ...ROW, spoke: 'idle', connected: false, sessions: 0, agentVersion: '', rttSeconds: null, bytesIn: 0, bytesOut: 0, lastSeen: null }
    expect(formatFleetTable([ROW, idle]).split('\n')).toEqual([
      'SPOKE      CONNECTED  SESSIONS  AGENT  RTT     BYTES IN  BYTES OUT  LAST SEEN             TOKEN EXPIRY',
      'orion-aws  yes        2         0.1.0  12.3ms  1.5 KiB   10 B       2026-12-01 17:00:00Z  none',
      'idle       no         0         -      -       0 B       0 B        never                 none',
    ])
  })

  test('anything but a /v1/spokes answer is refused', () => {
    expect(parseFleet({ spokes: [ROW] })).toEqual([ROW])
    expect(parseFleet({ spokes: [{ ...ROW, sessions: '2' }] })).toBeUndefined()
    expect(parseFleet([ROW])).toBeUndefined()
    expect(parseFleet({ data: [] })).toBeUndefined()
  })
})
