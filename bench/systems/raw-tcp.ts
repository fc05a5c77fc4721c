import type { SystemSpec } from './system.js'

/** The client talks to the upstream directly: the ceiling every other system is measured against. */
export const rawTcp: SystemSpec = {
  name: 'raw TCP',
  kind: 'baseline',
  bulk: true,
  start: async ({ upstream }) => ({ running: { ...upstream, close: async () => {} } }),
}
