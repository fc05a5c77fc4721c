import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A stand-in for a spoke's Prometheus: answers `/federate` and `/metrics` with a few series in the
 * text exposition format, so the demo needs nothing but Node.
 */
export async function startDemoExporter (cluster: string): Promise<{ port: number, close: () => void }> {
  let scrapes = 0
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/federate' && path !== '/metrics') {
      res.writeHead(404).end('not found\n')
      return
    }
    scrapes++
    const now = Date.now()
    const body = [
      '# TYPE up untyped',
      `up{cluster="${cluster}",instance="node-exporter:9100",job="node"} 1 ${now}`,
      '# TYPE node_load1 untyped',
      `node_load1{cluster="${cluster}",instance="node-exporter:9100",job="node"} 0.42 ${now}`,
      '# TYPE demo_scrapes_total untyped',
      `demo_scrapes_total{cluster="${cluster}",instance="prometheus:9090",job="prometheus"} ${scrapes} ${now}`,
      '',
    ].join('\n')
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body)
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return { port: (server.address() as AddressInfo).port, close: () => { server.close() } }
}
