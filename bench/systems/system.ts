import type { RunningProcess } from '@spokelink/testkit'
import type { TlsFixtureFiles } from '@spokelink/testkit'

/** Where the upstream child listens (see `peers/upstream.ts`). */
export interface UpstreamPorts {
  bulkPort: number
  httpPort: number
}

/** What every system gets to start with. */
export interface SystemContext {
  /** A private temporary directory for this system's config and keys. */
  dir: string
  upstream: UpstreamPorts
  tls: TlsFixtureFiles
  /** Extra `node` flags for the system's Node children (for example `--cpu-prof`, which NODE_OPTIONS refuses). */
  nodeArgs?: string[]
}

/** A running system under test: the client connects to its entry ports, which forward to the upstream. */
export interface RunningSystem {
  /** Entry port forwarding to the bulk upstream. */
  bulkPort: number
  /** Entry port forwarding to the HTTP upstream. */
  httpPort: number
  /** Process ids worth watching (CPU, RSS), by role. */
  pids?: Record<string, number>
  /** The same processes, for their output. */
  processes?: Record<string, RunningProcess>
  /** Idempotent; resolves once every process it started has exited. */
  close: () => Promise<void>
}

/** A system either runs or explains why it cannot. */
export type StartedSystem = { running: RunningSystem } | { skipped: string }

/** One column of the result: a way to carry TCP from the client to the upstream. */
export interface SystemSpec {
  /** Name in the table. */
  name: string
  /** What kind of peer it is, for the ratio to the best peer. */
  kind: 'baseline' | 'spokelink' | 'peer'
  /** Runs the bulk workloads too (a variant that only differs in latency can leave them out). */
  bulk: boolean
  start: (context: SystemContext) => Promise<StartedSystem>
}
