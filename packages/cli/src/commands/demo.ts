import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Command } from 'commander'
import { Registry } from 'prom-client'
import { addSpokeToken, createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { createAgent } from '@spokelink/agent'
import { createExitNode } from '@spokelink/exit-node'
import { addOptions, resolveCommandConfig } from '../command-options.js'
import { untilAborted } from '../command-context.js'
import type { CommandContext } from '../command-context.js'
import { stringSetting } from '../config.js'
import type { OptionSpec } from '../config.js'
import { startDemoExporter } from '../demo-exporter.js'
import { createRootLogger, isLogLevel } from '../logger.js'
import { printLine } from '../output.js'
import { LOG_LEVELS } from './server.js'

const DEMO_OPTIONS: readonly OptionSpec[] = [
  { name: 'keep-running', kind: 'boolean', help: 'keep the demo tunnel up until Ctrl-C so you can curl it yourself' },
  { name: 'log-level', kind: 'choice', arg: 'level', choices: LOG_LEVELS, default: 'warn', help: 'pino log level of the demo components' },
]

async function freeLoopbackPort (): Promise<number> {
  const probe = net.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as AddressInfo
  probe.close()
  await once(probe, 'close')
  return port
}

const BY_HAND = `
Do the same by hand (run from the repository root after pnpm build; the spoke here is a Prometheus on 127.0.0.1:9090):

  cat > spokes.yaml <<'YAML'
  spokes:
    - name: orion-aws
      labels: {cluster: orion-aws}
      tokens: []
      ports:
        - {upstream: prometheus, listen: "127.0.0.1:19090"}
  YAML
  TOKEN=$(./node_modules/.bin/spokelink token create --spokes spokes.yaml --spoke orion-aws --output json | node -pe 'JSON.parse(require("fs").readFileSync(0)).token')
  ./node_modules/.bin/spokelink server --listen 127.0.0.1:8123 --admin-listen 127.0.0.1:9464 --spokes spokes.yaml &
  SPOKELINK_TOKEN=$TOKEN ./node_modules/.bin/spokelink agent --server ws://127.0.0.1:8123/connect --upstream prometheus=127.0.0.1:9090 &
  curl -sg 'http://127.0.0.1:19090/federate?match[]={job!=""}'
  curl -s http://127.0.0.1:9464/metrics | grep spokelink_streams_total   # operators' port, not the agents'
`

async function runDemo (command: Command, context: CommandContext): Promise<void> {
  const { config } = await resolveCommandConfig(command, DEMO_OPTIONS, context.env)
  const level = stringSetting(config, 'log-level', true)
  const logger = createRootLogger(isLogLevel(level) ? level : 'warn')
  const dir = await mkdtemp(path.join(os.tmpdir(), 'spokelink-demo-'))
  const exporter = await startDemoExporter('demo-spoke')
  const dataPort = await freeLoopbackPort()
  const spokesText = [
    'spokes:',
    '  - name: demo-spoke',
    '    labels: {cluster: demo-spoke}',
    '    tokens: []',
    '    ports:',
    `      - {upstream: prometheus, listen: "127.0.0.1:${dataPort}"}`,
    '',
  ].join('\n')
  const token = createSpokeToken()
  const spokesPath = path.join(dir, 'spokes.yaml')
  const withToken = addSpokeToken(spokesText, 'demo-spoke', { id: token.id, sha256: token.sha256, created: new Date() }, spokesPath)
  await writeFile(spokesPath, withToken, { mode: 0o600 })
  const exitNode = createExitNode({ host: '127.0.0.1', port: 0, adminPort: 0 }, parseSpokesConfig(withToken, spokesPath), { logger, registry: new Registry() })
  const agent = createAgent({
    server: `ws://127.0.0.1:${(await exitNode.listen()).port}/connect`,
    token: token.token,
    upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: exporter.port }],
  }, { logger, registry: new Registry() })
  try {
    const connected = once(agent, 'connected', { signal: AbortSignal.timeout(15_000) })
    agent.start()
    await connected
    const url = `http://127.0.0.1:${dataPort}/federate?match[]={job!=""}`
    const response = await fetch(url)
    printLine(`spokelink demo: exit-node on ${exitNode.address().port}, agent connected as spoke "demo-spoke", sample Prometheus on ${exporter.port}`)
    printLine(`GET ${url} (through the tunnel) → ${response.status}`)
    printLine('')
    printLine((await response.text()).trimEnd())
    printLine(BY_HAND)
    if (config['keep-running'] === true) {
      printLine(`The demo tunnel stays up: curl -sg '${url}'   (Ctrl-C to stop)`)
      await untilAborted(context.shutdown)
    }
  } finally {
    await agent.close({ graceMs: 0 })
    await exitNode.close()
    exporter.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/** `spokelink demo`: exit-node, agent and a sample exporter on loopback; prints a scrape through the tunnel. */
export function demoCommand (context: CommandContext): Command {
  const command = new Command('demo').description('run an exit-node, an agent and a sample Prometheus on loopback and scrape through the tunnel')
  addOptions(command, DEMO_OPTIONS)
  command.action(async () => { await runDemo(command, context) })
  return command
}
