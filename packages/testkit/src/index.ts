/**
 * Test helpers for spokelink: polling with a named timeout, loopback ports, a child-process runner
 * with parsed pino logs, a fixture Prometheus exporter, the real Prometheus, TLS fixtures and
 * deterministic byte sources for hash-checked transfers. Private: only ever a devDependency.
 *
 * @example
 * ```ts
 * import { runSpokelink, startFixtureExporter, waitFor } from '@spokelink/testkit'
 *
 * const exporter = await startFixtureExporter()
 * const server = runSpokelink(['server', '--listen', '127.0.0.1:0', '--spokes', spokesFile])
 * const listening = await server.waitForLog((e) => e.msg === 'listening', { what: 'server listening' })
 * await waitFor(() => exporter.requests > 0, { what: 'a scrape of the fixture exporter' })
 * await server.kill()
 * ```
 *
 * @packageDocumentation
 */
export { waitFor, WAIT_FOR_DEFAULTS } from './wait-for.js'
export type { WaitForOptions } from './wait-for.js'
export { listenLoopback } from './listen-loopback.js'
export { ephemeralPortRange, freePort } from './free-port.js'
export { socketPair } from './socket-pair.js'
export { startFixtureExporter, defaultFixtureMetrics } from './fixture-exporter.js'
export type { FixtureExporter, FixtureExporterOptions } from './fixture-exporter.js'
export { runProcess, killAllProcesses, RUN_PROCESS_DEFAULTS } from './run-process.js'
export type { RunProcessOptions, RunningProcess, ProcessExit, ProcessWaitOptions, LogEntry } from './run-process.js'
export { runSpokelink, spokelinkBin } from './run-spokelink.js'
export { startPrometheus, isPrometheusInstalled, findPrometheusBin } from './start-prometheus.js'
export type { StartPrometheusOptions, RunningPrometheus, PrometheusSample, PrometheusTargets } from './start-prometheus.js'
export { prometheusConfig, formatPrometheusDuration, FEDERATE_ALL_SELECTOR, PROMETHEUS_CONFIG_DEFAULTS } from './prometheus-config.js'
export type { PrometheusConfigOptions, PrometheusJob, RemoteWriteTarget } from './prometheus-config.js'
export { createTlsFixture, writeTlsFixtureFiles } from './tls-fixture.js'
export { createMitmCertificates, subjectKeyIdentifierHex } from './mitm-certificates.js'
export type { MitmCertificates } from './mitm-certificates.js'
export type { TlsFixture, TlsFixtureFiles, TlsFixtureOptions } from './tls-fixture.js'
export { hashStream, sha256Hex } from './hash-stream.js'
export type { StreamHash } from './hash-stream.js'
export { deterministicSource, expectedSha256, DETERMINISTIC_CHUNK_BYTES } from './deterministic-source.js'
export { rawHttpExchange, parseRawHttpResponse, webSocketUpgradeRequest } from './raw-http.js'
export type { RawHttpResponse, RawHttpExchangeOptions } from './raw-http.js'
export { parseMetricsText, metricValue } from './metrics-text.js'
export { readRssKiB } from './process-rss.js'
export type { MetricSample } from './metrics-text.js'
export { startRecordingRelay } from './recording-relay.js'
export type { RecordingRelay } from './recording-relay.js'
export { POLICY_ATTACKS } from './policy-attacks.js'
export type { PolicyAttack } from './policy-attacks.js'
export { createDelayLink, delayedSocketPair, DELAY_LINK_DEFAULTS } from './delay-link.js'
export type { DelayLink, DelayLinkClock, DelayLinkOptions, DelayLinkStats, DelayedSocketPair } from './delay-link.js'
export { createManualClock } from './manual-clock.js'
export type { ManualClock } from './manual-clock.js'
export { createLogCapture } from './log-capture.js'
export type { LogCapture } from './log-capture.js'
export { spokesYaml } from './spokes-yaml.js'
export type { SpokesYamlSpoke, SpokesYamlToken } from './spokes-yaml.js'
export { startEchoServer } from './echo-server.js'
export type { EchoServer } from './echo-server.js'
export { startApiServer, apiServerMissing, findKubeApiServerBin, findEtcdBin } from './start-api-server.js'
export type { StartApiServerOptions, RunningApiServer, ApiResponse } from './start-api-server.js'
export { parsePrometheusText, sampleValue } from './prometheus-text.js'
export type { TextSample } from './prometheus-text.js'
export { runHeadlessChromium, findChromiumBin } from './headless-chromium.js'
export type { HeadlessChromiumOptions } from './headless-chromium.js'
export { extractReadmeFlow, splitExpectedOutput, exampleLinePattern } from './readme-flow.js'
export type { ReadmeFlowBlock, ReadmeFlowKind } from './readme-flow.js'
export { servedFingerprint } from './tls-fingerprint.js'
