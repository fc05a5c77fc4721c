import type { SpokeStatus } from './fleet-view.js'

/** How often the status page reloads itself, in seconds. */
export const STATUS_PAGE_REFRESH_SECONDS = 5

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\'': '&#39;' }

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c)
}

/** Bytes as B, KiB, MiB or GiB with one decimal. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit] ?? ''}`
}

/** An RTT in milliseconds with one decimal, or `-` before the first pong. */
export function formatRtt (rttSeconds: number | null): string {
  return rttSeconds === null ? '-' : `${(rttSeconds * 1000).toFixed(1)} ms`
}

/** A timestamp as `2026-12-01 17:44:38Z`, or `never`. */
export function formatTimestamp (iso: string | null, never = 'never'): string {
  return iso === null ? never : `${iso.slice(0, 19).replace('T', ' ')}Z`
}

const STYLE = `body{font:14px system-ui,sans-serif;margin:1.5em;color:#1d232a}
h1{font-size:1.3em;margin:0 0 .2em}p{color:#5a6570;margin:0 0 1em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35em .7em;border-bottom:1px solid #dde3e8;white-space:nowrap}
th{background:#f2f5f7;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#18794e;font-weight:600}.down{color:#c4321a;font-weight:600}`

/**
 * The admin port's status page: one row per configured spoke, server-rendered with every value escaped, no scripts
 * or external assets, reloading itself every {@link STATUS_PAGE_REFRESH_SECONDS} seconds.
 */
export function renderStatusPage (statuses: readonly SpokeStatus[], now: Date): string {
  const connected = statuses.filter((status) => status.connected).length
  const rows = statuses.map((status) => {
    const cells = [
      `<td class="spoke">${escapeHtml(status.spoke)}</td>`,
      `<td class="${status.connected ? 'up' : 'down'}">${status.connected ? 'connected' : 'disconnected'}</td>`,
      `<td class="num">${status.sessions}</td>`,
      `<td>${escapeHtml(status.agentVersion === '' ? '-' : status.agentVersion)}</td>`,
      `<td class="num">${escapeHtml(formatRtt(status.rttSeconds))}</td>`,
      `<td class="num">${escapeHtml(formatBytes(status.bytesIn))}</td>`,
      `<td class="num">${escapeHtml(formatBytes(status.bytesOut))}</td>`,
      `<td>${escapeHtml(formatTimestamp(status.lastSeen))}</td>`,
      `<td>${escapeHtml(formatTimestamp(status.tokenExpiry, 'no expiry'))}</td>`,
    ]
    return `<tr data-spoke="${escapeHtml(status.spoke)}">${cells.join('')}</tr>`
  })
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${STATUS_PAGE_REFRESH_SECONDS}">
<title>spokelink: ${connected}/${statuses.length} spokes connected</title>
<style>${STYLE}</style></head>
<body><h1>spokelink fleet</h1>
<p id="summary">${connected} of ${statuses.length} spokes connected · ${escapeHtml(formatTimestamp(now.toISOString()))}</p>
<table><thead><tr><th>spoke</th><th>state</th><th>sessions</th><th>agent version</th><th>RTT</th><th>bytes in</th><th>bytes out</th><th>last seen</th><th>token expiry</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table></body></html>
`
}
