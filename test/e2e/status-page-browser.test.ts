/**
 * Issue 11: the admin port's status page in a real browser (Debian's chromium, headless) against a running exit-node
 * with two spokes, before and after one disconnects. The run also writes docs/status-page.png for the README.
 */
import { once } from 'node:events'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { expect, onTestFinished, test } from 'vitest'
import pino from 'pino'
import { Registry } from 'prom-client'
import { createAgent } from '@spokelink/agent'
import { createSpokeToken, parseSpokesConfig } from '@spokelink/auth'
import { freePort, runHeadlessChromium, waitFor } from '@spokelink/testkit'
import { FAST_BACKOFF, listen, startExitNode } from './in-process-tunnel.js'

const SCREENSHOT = fileURLToPath(new URL('../../docs/status-page.png', import.meta.url))

/** The text of each table row of the dumped DOM, cells joined by `|`. */
function rowsOf (dom: string): string[] {
  return [...dom.matchAll(/<tr data-spoke="[^"]*">(.*?)<\/tr>/g)].map((row) => [...(row[1] ?? '').matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((cell) => cell[1]).join('|'))
}

// Never skipped: without chromium, runHeadlessChromium fails naming the install step (scripts/test installs it).
test('the status page shows both spokes, then one disconnected, in a real browser', async () => {
  const logger = pino({ level: 'silent' })
  const upstream = await listen(http.createServer((_req, res) => { res.end('ok') }))
  const spokes = [
    { name: 'orion-aws', token: createSpokeToken(), dataPort: await freePort() },
    { name: 'vega-gcp', token: createSpokeToken(), dataPort: await freePort() },
  ]
  const config = parseSpokesConfig(['spokes:', ...spokes.flatMap((spoke, i) => [
    `  - name: ${spoke.name}`,
    `    tokens: [{id: "${spoke.token.id}", sha256: "${spoke.token.sha256}"${i === 0 ? ', expires: "2031-01-02T03:04:05Z"' : ''}}]`,
    `    ports: [{upstream: prometheus, listen: "127.0.0.1:${spoke.dataPort}"}]`,
  ]), ''].join('\n'), 'test')
  const { url, adminPort } = await startExitNode(config, logger, { keepaliveIntervalMs: 100 })
  const agents = await Promise.all(spokes.map(async (spoke) => {
    const agent = createAgent({ server: url, token: spoke.token.token, upstreams: [{ name: 'prometheus', host: '127.0.0.1', port: upstream }], backoff: FAST_BACKOFF, keepaliveIntervalMs: 100 }, { logger, registry: new Registry() })
    onTestFinished(async () => { await agent.close({ graceMs: 0 }) })
    const connected = once(agent, 'connected', { signal: AbortSignal.timeout(10_000) })
    agent.start()
    await connected
    return agent
  }))
  // Some traffic, so the bytes columns are not zero, and a measured RTT.
  for (const spoke of spokes) expect(await (await fetch(`http://127.0.0.1:${spoke.dataPort}/`)).text()).toBe('ok')
  const fleet = async (): Promise<Array<{ spoke: string, connected: boolean, rttSeconds: number | null }>> =>
    ((await (await fetch(`http://127.0.0.1:${adminPort}/v1/spokes`)).json()) as { spokes: Array<{ spoke: string, connected: boolean, rttSeconds: number | null }> }).spokes
  await waitFor(async () => (await fleet()).every((s) => s.rttSeconds !== null), { timeoutMs: 30_000, what: 'an RTT for both spokes' })

  const page = `http://127.0.0.1:${adminPort}/status`
  const before = await runHeadlessChromium(page)
  expect(before).toContain('2 of 2 spokes connected')
  const rows = rowsOf(before)
  expect(rows).toHaveLength(2)
  expect(rows[0]).toMatch(/^orion-aws\|connected\|1\|0\.1\.0\|\d+\.\d ms\|\d+ B\|\d+ B\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\|2031-01-02 03:04:05Z$/)
  expect(rows[1]).toMatch(/^vega-gcp\|connected\|1\|0\.1\.0\|\d+\.\d ms\|.*\|no expiry$/)
  await runHeadlessChromium(page, { screenshotPath: SCREENSHOT, windowSize: '1100,500' })

  await agents[1]?.close({ graceMs: 0 })
  await waitFor(async () => (await fleet()).find((s) => s.spoke === 'vega-gcp')?.connected === false, { timeoutMs: 30_000, what: 'vega-gcp disconnected' })
  const after = await runHeadlessChromium(page)
  expect(after).toContain('1 of 2 spokes connected')
  const afterRows = rowsOf(after)
  expect(afterRows[0]).toMatch(/^orion-aws\|connected\|1\|/)
  expect(afterRows[1]).toMatch(/^vega-gcp\|disconnected\|0\|0\.1\.0\|-\|/)
}, 120_000)
