import { existsSync } from 'node:fs'
import { describe, expect, onTestFinished, test } from 'vitest'
import { prometheusConfig, isPrometheusInstalled, startFixtureExporter, startPrometheus, waitFor } from '@spokelink/testkit'
import type { RunningPrometheus } from '@spokelink/testkit'

describe('prometheusConfig', () => {
  test('renders static, federation and HTTP SD jobs with a tiny interval', () => {
    const yaml = prometheusConfig({
      globalLabels: { hub: 'central' },
      scrapeIntervalMs: 200,
      jobs: [
        { name: 'fixture', targets: ['127.0.0.1:1234'], labels: { cluster: 'orion-aws' } },
        { name: 'federate', targets: ['127.0.0.1:9090'], federate: true },
        { name: 'spokes', httpSdUrls: ['http://127.0.0.1:8123/v1/sd'], metricsPath: '/federate', params: { 'match[]': ['up'] }, honorLabels: true, scrapeIntervalMs: 1000 },
      ],
    })
    expect(yaml).toBe([
      'global:',
      '  scrape_interval: 200ms',
      '  scrape_timeout: 200ms',
      '  evaluation_interval: 200ms',
      '  external_labels:',
      '    "hub": "central"',
      'scrape_configs:',
      '  - job_name: "fixture"',
      '    static_configs:',
      '      - targets: ["127.0.0.1:1234"]',
      '        labels:',
      '          "cluster": "orion-aws"',
      '  - job_name: "federate"',
      '    metrics_path: "/federate"',
      '    honor_labels: true',
      '    params:',
      '      "match[]": ["{job!=\\"\\"}"]',
      '    static_configs:',
      '      - targets: ["127.0.0.1:9090"]',
      '  - job_name: "spokes"',
      '    scrape_interval: 1s',
      '    scrape_timeout: 1s',
      '    metrics_path: "/federate"',
      '    honor_labels: true',
      '    params:',
      '      "match[]": ["up"]',
      '    http_sd_configs:',
      '      - url: "http://127.0.0.1:8123/v1/sd"',
      '        refresh_interval: 1s',
      '',
    ].join('\n'))
  })

  test('rejects a job with nothing to scrape', () => {
    expect(() => prometheusConfig({ jobs: [{ name: 'empty' }] })).toThrow(/job "empty" needs targets or httpSdUrls/)
  })
})

// In CI isPrometheusInstalled() throws instead of returning false, so these never skip there.
describe.skipIf(!isPrometheusInstalled())('real Prometheus', () => {
  const start = async (config: string, name: string): Promise<RunningPrometheus> => {
    const prometheus = await startPrometheus({ config, name })
    onTestFinished(prometheus.close)
    return prometheus
  }

  test('scrapes the fixture exporter, and a hub federates it with the spoke labels kept', async () => {
    const exporter = await startFixtureExporter()
    onTestFinished(exporter.close)
    const spoke = await start(prometheusConfig({
      globalLabels: { cluster: 'orion-aws' },
      scrapeIntervalMs: 100,
      jobs: [{ name: 'fixture', targets: [exporter.target] }],
    }), 'spoke')
    expect(spoke.url).toBe(`http://127.0.0.1:${spoke.port}`)

    const up = await waitFor(async () => {
      const samples = await spoke.query('fixture_up')
      return samples.length > 0 ? samples : undefined
    }, { what: 'the spoke Prometheus to scrape fixture_up', timeoutMs: 30_000, intervalMs: 100 })
    expect(up).toHaveLength(1)
    expect(up[0]?.metric).toEqual({ __name__: 'fixture_up', instance: exporter.target, job: 'fixture' })
    expect(up[0]?.value[1]).toBe('1')
    expect(exporter.requests).toBeGreaterThan(0)

    const targets = await spoke.targets()
    expect(targets.activeTargets.map((t) => [t.scrapePool, t.scrapeUrl, t.health]))
      .toEqual([['fixture', exporter.metricsUrl, 'up']])
    expect(spoke.process.logs.some((e) => e.msg === 'Server is ready to receive web requests.')).toBe(true)

    const hub = await start(prometheusConfig({
      scrapeIntervalMs: 100,
      jobs: [{ name: 'federate-orion', targets: [spoke.target], federate: true }],
    }), 'hub')
    const federated = await waitFor(async () => {
      const samples = await hub.query('fixture_temperature_celsius')
      return samples.length === 2 ? samples : undefined
    }, { what: 'the hub to federate fixture_temperature_celsius', timeoutMs: 30_000, intervalMs: 100 })
    // honor_labels keeps the spoke's job/instance; external_labels add the spoke's cluster.
    expect(federated.map((s) => s.metric).sort((a, b) => String(a.sensor).localeCompare(String(b.sensor)))).toEqual([
      { __name__: 'fixture_temperature_celsius', cluster: 'orion-aws', instance: exporter.target, job: 'fixture', room: 'lab', sensor: 'a' },
      { __name__: 'fixture_temperature_celsius', cluster: 'orion-aws', instance: exporter.target, job: 'fixture', room: 'lab', sensor: 'b' },
    ])

    await spoke.close()
    expect(spoke.process.exit).toEqual({ code: 0, signal: null })
    expect(existsSync(spoke.dataDir)).toBe(false)
  })

  test('reports a config Prometheus rejects, with its output', async () => {
    await expect(startPrometheus({ config: 'scrape_configs: [{job_name: 1, nonsense: true}]\n', name: 'broken' }))
      .rejects.toThrow(/broken exited .*before it was ready[\s\S]*--- last output of broken ---/)
  })

  test('reloads a new config through the lifecycle API', async () => {
    const exporter = await startFixtureExporter()
    onTestFinished(exporter.close)
    const prometheus = await start(prometheusConfig({ jobs: [{ name: 'before', targets: [exporter.target] }] }), 'reloading')
    await prometheus.reload(prometheusConfig({ scrapeIntervalMs: 100, jobs: [{ name: 'after', targets: [exporter.target] }] }))
    const pools = await waitFor(async () => {
      const { activeTargets } = await prometheus.targets()
      return activeTargets.length > 0 && activeTargets.every((t) => t.scrapePool === 'after') ? activeTargets.map((t) => t.scrapePool) : undefined
    }, { what: 'the reloaded job to replace the old one', timeoutMs: 30_000, intervalMs: 100 })
    expect(pools).toEqual(['after'])
  })
})
