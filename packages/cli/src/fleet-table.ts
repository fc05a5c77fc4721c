import { formatBytes } from '@spokelink/exit-node'

/** One row of `/v1/spokes`, as far as `spokelink status` prints it. */
export interface FleetRow {
  spoke: string
  connected: boolean
  sessions: number
  agentVersion: string
  rttSeconds: number | null
  bytesIn: number
  bytesOut: number
  lastSeen: string | null
  tokenExpiry: string | null
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const nullableString = (value: unknown): value is string | null => value === null || typeof value === 'string'

/** Reads a `/v1/spokes` answer; undefined when it is not one. */
export function parseFleet (body: unknown): FleetRow[] | undefined {
  if (!isRecord(body) || !Array.isArray(body.spokes)) return undefined
  const rows: FleetRow[] = []
  for (const item of body.spokes) {
    if (!isRecord(item)) return undefined
    const { spoke, connected, sessions, agentVersion, rttSeconds, bytesIn, bytesOut, lastSeen, tokenExpiry } = item
    if (typeof spoke !== 'string' || typeof connected !== 'boolean' || typeof sessions !== 'number' || typeof agentVersion !== 'string' ||
      !(rttSeconds === null || typeof rttSeconds === 'number') || typeof bytesIn !== 'number' || typeof bytesOut !== 'number' ||
      !nullableString(lastSeen) || !nullableString(tokenExpiry)) return undefined
    rows.push({ spoke, connected, sessions, agentVersion, rttSeconds, bytesIn, bytesOut, lastSeen, tokenExpiry })
  }
  return rows
}

const timestamp = (iso: string | null, none: string): string => iso === null ? none : `${iso.slice(0, 19).replace('T', ' ')}Z`

/** The fleet as an aligned text table with a header line. */
export function formatFleetTable (rows: readonly FleetRow[]): string {
  const header = ['SPOKE', 'CONNECTED', 'SESSIONS', 'AGENT', 'RTT', 'BYTES IN', 'BYTES OUT', 'LAST SEEN', 'TOKEN EXPIRY']
  const lines = rows.map((row) => [
    row.spoke,
    row.connected ? 'yes' : 'no',
    String(row.sessions),
    row.agentVersion === '' ? '-' : row.agentVersion,
    row.rttSeconds === null ? '-' : `${(row.rttSeconds * 1000).toFixed(1)}ms`,
    formatBytes(row.bytesIn),
    formatBytes(row.bytesOut),
    timestamp(row.lastSeen, 'never'),
    timestamp(row.tokenExpiry, 'none'),
  ])
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => (line[i] ?? '').length)))
  return [header, ...lines].map((line) => line.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}
