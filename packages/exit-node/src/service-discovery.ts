import type { SpokesConfig } from '@spokelink/auth'

/** One Prometheus `http_sd_configs` target group. */
export interface TargetGroup {
  targets: string[]
  labels: Record<string, string>
}

/** Renders a target address; `{spoke}`, `{upstream}`, `{host}` and `{port}` are replaced. */
export type TargetTemplate = string

const UNSPECIFIED_HOSTS = new Set(['0.0.0.0', '::', '[::]', ''])

function sanitizeLabelName (name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_')
}

/** Whether `host` means every interface (so it cannot be dialled as a target). */
export function isUnspecifiedHost (host: string): boolean {
  return UNSPECIFIED_HOSTS.has(host)
}

/**
 * Builds the `/v1/sd` answer: one target group per spoke port, with `__meta_spokelink_*` labels so
 * the hub can relabel; a port listening on every interface is addressed by `wildcardHost`, which comes
 * from configuration (never from a request header, which any client could set).
 */
export function buildTargetGroups (spokes: SpokesConfig, isConnected: (spoke: string) => boolean, template: TargetTemplate, wildcardHost: string): TargetGroup[] {
  return spokes.spokes.flatMap((spoke) => spoke.ports.map((port) => {
    const host = UNSPECIFIED_HOSTS.has(port.listen.host) ? wildcardHost : port.listen.host
    const target = template
      .replaceAll('{spoke}', spoke.name)
      .replaceAll('{upstream}', port.upstream)
      .replaceAll('{host}', host)
      .replaceAll('{port}', String(port.listen.port))
    const labels: Record<string, string> = {
      __meta_spokelink_spoke: spoke.name,
      __meta_spokelink_upstream: port.upstream,
      __meta_spokelink_connected: String(isConnected(spoke.name)),
    }
    for (const [name, value] of Object.entries(spoke.labels)) labels[`__meta_spokelink_label_${sanitizeLabelName(name)}`] = value
    return { targets: [target], labels }
  }))
}
