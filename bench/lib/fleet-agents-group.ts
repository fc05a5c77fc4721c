import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { FleetAgentsConfig } from '../peers/fleet-agents.js'

const FLEET_AGENTS = fileURLToPath(new URL('../peers/fleet-agents.ts', import.meta.url))

/** One tick of one agents process: upgrade attempts since its previous tick, agents connected now. */
export interface AgentsTick {
  t: number
  attempts: number
  connected: number
  /** Since the previous tick: sessions lost, first attempts after a lost session, sessions established. */
  lost: number
  first: number
  back: number
}

/**
 * One `peers/fleet-agents.ts` child. Its stdout is read line by line and not kept (unlike testkit's runProcess,
 * which keeps every line): the ticks go to the listener, so a long run does not grow the bench's memory.
 */
export class FleetAgentsProcess {
  readonly child: ChildProcess
  readonly tokens: number
  upstreamPort = 0
  connected = 0
  /** The longest event-loop delay this process reported since the bench last reset it. */
  loopDelayMaxMs = 0
  onTick: ((tick: AgentsTick) => void) | undefined
  readonly #ready: Promise<void>
  #stderrTail = ''

  constructor (configFile: string, tokens: number, connectTimeoutMs: number) {
    this.tokens = tokens
    this.child = spawn(process.execPath, ['--import', 'tsx', FLEET_AGENTS, configFile], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stderr?.on('data', (chunk: Buffer) => { this.#stderrTail = (this.#stderrTail + chunk.toString('utf8')).slice(-2000) })
    const lines = createInterface({ input: this.child.stdout ?? process.stdin })
    this.#ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`agents process: ${tokens} agents not connected after ${connectTimeoutMs} ms; stderr: ${this.#stderrTail}`)) }, connectTimeoutMs)
      this.child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`agents process exited (${String(code ?? signal)}): ${this.#stderrTail}`))
      })
      lines.on('line', (line) => {
        let entry: Record<string, unknown>
        try {
          entry = JSON.parse(line) as Record<string, unknown>
        } catch {
          return
        }
        if (typeof entry.upstreamPort === 'number') this.upstreamPort = entry.upstreamPort
        else if (typeof entry.t === 'number' && typeof entry.attempts === 'number' && typeof entry.connected === 'number') {
          this.connected = entry.connected
          if (typeof entry.loopDelayMaxMs === 'number') this.loopDelayMaxMs = Math.max(this.loopDelayMaxMs, entry.loopDelayMaxMs)
          const count = (value: unknown): number => typeof value === 'number' ? value : 0
          this.onTick?.({ t: entry.t, attempts: entry.attempts, connected: entry.connected, lost: count(entry.lost), first: count(entry.first), back: count(entry.back) })
        } else if (typeof entry.connected === 'number') {
          clearTimeout(timer)
          this.connected = entry.connected
          resolve()
        }
      })
    })
  }

  /** Resolves once every agent of this process has connected the first time. */
  async ready (): Promise<void> {
    await this.#ready
  }

  async close (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => { this.child.once('exit', () => { resolve() }) })
    this.child.kill('SIGTERM')
    await exited
  }
}

/** Starts `processes` agents processes sharing `tokens` in contiguous slices; returns which process serves each token. */
export async function startFleetAgents (dir: string, base: Omit<FleetAgentsConfig, 'tokens'>, tokens: readonly string[], processes: number): Promise<{ groups: FleetAgentsProcess[], processOf: (i: number) => FleetAgentsProcess }> {
  const per = Math.ceil(tokens.length / processes)
  const groups: FleetAgentsProcess[] = []
  for (let p = 0; p * per < tokens.length; p++) {
    const slice = tokens.slice(p * per, (p + 1) * per)
    const file = join(dir, `fleet-agents-${p}.json`)
    await writeFile(file, JSON.stringify({ ...base, tokens: slice } satisfies FleetAgentsConfig), { mode: 0o600 })
    groups.push(new FleetAgentsProcess(file, slice.length, base.connectTimeoutMs + slice.length * 1000))
  }
  process.on('exit', () => { for (const group of groups) group.child.kill('SIGKILL') })
  try {
    await Promise.all(groups.map(async (group) => { await group.ready() }))
  } catch (err) {
    await Promise.all(groups.map(async (group) => { await group.close() }))
    throw err
  }
  const processOf = (i: number): FleetAgentsProcess => {
    const group = groups[Math.floor(i / per)]
    if (group === undefined) throw new Error(`no agents process serves token ${i}`)
    return group
  }
  return { groups, processOf }
}
