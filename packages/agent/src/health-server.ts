import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Agent } from './agent.js'

/**
 * Serves `/healthz` (the process is alive), `/readyz` (the agent holds a session; while the exit-node refuses it for
 * good, the 503 body says `refused: <code>: <reason>`) and `/metrics`.
 * Resolves once bound; `close()` on the returned server stops it.
 */
export async function startAgentHealthServer (listen: { host: string, port: number }, agent: Agent, deps: { registry: Registry, logger: Logger }): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type })
      res.end(body)
    }
    if (path === '/healthz') send(200, 'ok\n')
    else if (path === '/readyz') send(agent.state === 'connected' ? 200 : 503, readyText(agent))
    else if (path === '/metrics') void deps.registry.metrics().then((text) => { send(200, text, deps.registry.contentType) })
    else send(404, 'not found\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => { server.off('error', reject); resolve() })
  })
  const address = server.address() as AddressInfo
  deps.logger.child({ component: 'agent.health' }).info({ address: address.address, port: address.port }, 'listening')
  return server
}

function readyText (agent: Agent): string {
  const failure = agent.state === 'connected' ? undefined : agent.permanentFailure
  return failure === undefined ? `${agent.state}\n` : `refused: ${failure.code}: ${failure.reason}\n`
}
