import { describe, expect, onTestFinished, test } from 'vitest'
import { startFixtureExporter } from '@spokelink/testkit'

describe('startFixtureExporter', () => {
  test('serves Prometheus text at /metrics, counting requests, and 404 elsewhere', async () => {
    const exporter = await startFixtureExporter()
    onTestFinished(exporter.close)
    expect(exporter.url).toBe(`http://127.0.0.1:${exporter.port}`)
    expect(exporter.target).toBe(`127.0.0.1:${exporter.port}`)

    const first = await fetch(exporter.metricsUrl)
    expect(first.status).toBe(200)
    expect(first.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    const body = await first.text()
    expect(body).toMatch(/^fixture_up 1$/m)
    expect(body).toMatch(/^fixture_requests_total 1$/m)
    expect(await (await fetch(exporter.metricsUrl)).text()).toMatch(/^fixture_requests_total 2$/m)
    expect(exporter.requests).toBe(2)

    const missing = await fetch(`${exporter.url}/federate`)
    expect(missing.status).toBe(404)
    await missing.text()
    expect(exporter.requests).toBe(2)
  })

  test('serves custom metrics, fixed or computed per scrape, and closes idempotently', async () => {
    let n = 0
    const exporter = await startFixtureExporter({ metrics: () => `custom_value ${++n}\n` })
    expect(await (await fetch(exporter.metricsUrl)).text()).toBe('custom_value 1\n')
    expect(await (await fetch(exporter.metricsUrl)).text()).toBe('custom_value 2\n')
    await Promise.all([exporter.close(), exporter.close()])
    await expect(fetch(exporter.metricsUrl)).rejects.toThrow()

    const fixed = await startFixtureExporter({ metrics: 'x 1\n' })
    onTestFinished(fixed.close)
    expect(await (await fetch(fixed.metricsUrl)).text()).toBe('x 1\n')
  })
})
