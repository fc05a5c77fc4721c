import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createSpokeToken } from '@spokelink/auth'
import { runProcess, spokelinkBin } from '@spokelink/testkit'
import type { RunningProcess, RunProcessOptions } from '@spokelink/testkit'
import { pickNamedPorts } from '../lib/ports.js'
import { startChildren } from '../lib/child-group.js'
import { waitUntilForwardingBoth } from '../lib/probe.js'
import type { StartedSystem, SystemContext, SystemSpec } from './system.js'

/** How long an exit-node or agent child may take to log that it is up. */
const STARTUP_TIMEOUT_MS = 20_000

/** `node [nodeArgs] packages/cli/bin/spokelink.js args`: the built CLI as a child process. */
function runCli (context: SystemContext, args: readonly string[], options: RunProcessOptions): RunningProcess {
  return runProcess(process.execPath, [...(context.nodeArgs ?? []), spokelinkBin(), ...args], options)
}

export interface ExitNodeChild {
  process: RunningProcess
  /** `ws://…/connect` or `wss://…/connect`. */
  url: string
}

/** Starts `spokelink server` on a loopback port 0 with `spokesFile`, over wss when `tls` is set, and waits for `listening`. */
export async function startExitNode (context: SystemContext, spokesFile: string, tls: boolean, name: string): Promise<ExitNodeChild> {
  const tlsArgs = tls ? ['--tls-cert', context.tls.certFile, '--tls-key', context.tls.keyFile] : []
  const child = runCli(context, ['server', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--spokes', spokesFile, ...tlsArgs], { name })
  const listening = await child.waitForLog((entry) => entry.msg === 'listening' && entry.listener === 'control', { what: `${name} listening`, timeoutMs: STARTUP_TIMEOUT_MS })
  if (typeof listening.port !== 'number') throw new Error(`${name}: 'listening' log has no port`)
  return { process: child, url: `${tls ? 'wss' : 'ws'}://127.0.0.1:${listening.port}/connect` }
}

/** The spokes file: one spoke whose two ports forward to the agent's `bulk` and `http` upstreams. */
function spokesFileText (sha256: string, id: string, bulkPort: number, httpPort: number): string {
  return JSON.stringify({
    spokes: [{
      name: 'bench',
      tokens: [{ id, sha256 }],
      ports: [
        { upstream: 'bulk', listen: `127.0.0.1:${bulkPort}` },
        { upstream: 'http', listen: `127.0.0.1:${httpPort}` },
      ],
    }],
  }, null, 2)
}

async function startTunnel (context: SystemContext, tls: boolean): Promise<StartedSystem> {
  const { token, id, sha256 } = createSpokeToken()
  const { bulkPort, httpPort } = await pickNamedPorts(['bulkPort', 'httpPort'])
  const spokesFile = join(context.dir, 'spokes.json')
  await writeFile(spokesFile, spokesFileText(sha256, id, bulkPort, httpPort))
  return startChildren(async (group) => {
    const exitNode = await startExitNode(context, spokesFile, tls, `exit-node (${tls ? 'wss' : 'ws'})`)
    group.add(exitNode.process)
    const agent = group.add(runCli(context, [
      'agent', '--server', exitNode.url,
      '--upstream', `bulk=127.0.0.1:${context.upstream.bulkPort}`,
      '--upstream', `http=127.0.0.1:${context.upstream.httpPort}`,
      ...(tls ? ['--ca-file', context.tls.caFile] : []),
    ], { name: `agent (${tls ? 'wss' : 'ws'})`, env: { SPOKELINK_TOKEN: token } }))
    await agent.waitForLog((entry) => entry.msg === 'connected', { what: 'the agent to connect', timeoutMs: STARTUP_TIMEOUT_MS })
    await group.until(waitUntilForwardingBoth({ bulkPort, httpPort }, 'the spokelink tunnel'))
    return { bulkPort, httpPort, pids: { exitNode: exitNode.process.pid, agent: agent.pid }, processes: { exitNode: exitNode.process, agent } }
  })
}

/** The tunnel over plain ws: exit-node and agent as two child processes of the `spokelink` CLI. */
export const spokelinkWs: SystemSpec = {
  name: 'spokelink ws',
  kind: 'spokelink',
  bulk: true,
  start: async (context) => startTunnel(context, false),
}

/** The tunnel over wss with a test CA (the agent gets `--ca-file`). */
export const spokelinkWss: SystemSpec = {
  name: 'spokelink wss',
  kind: 'spokelink',
  bulk: true,
  start: async (context) => startTunnel(context, true),
}
