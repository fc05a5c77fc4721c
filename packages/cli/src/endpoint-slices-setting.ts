import type { KubeConfig } from '@kubernetes/client-node'
import { validateEndpointSlicePublisherOptions } from '@spokelink/exit-node'
import type { EndpointSlicePublisherOptions } from '@spokelink/exit-node'
import type { ResolvedConfig } from './config.js'
import { stringSetting } from './config.js'
import { CliError } from './errors.js'

/** The downward-API variables `--endpoint-slices` reads (the exit-node chart sets them). */
export const POD_ENV = ['POD_NAME', 'POD_IP', 'POD_NAMESPACE', 'POD_UID'] as const

/** What `--endpoint-slices` resolved to: the publisher's options and the Kubernetes client config. */
export interface EndpointSlicesSetting {
  options: EndpointSlicePublisherOptions & { namespace: string }
  kubeConfig: KubeConfig
}

/**
 * The exit-node's EndpointSlice settings, checked as a start would (also by `--check-config`, which contacts no
 * API): undefined without `--endpoint-slices`; otherwise the pod from the downward API and a Kubernetes client
 * config from KUBECONFIG or the pod's service account.
 * @throws CliError SLK_ERR_CONFIG_KUBERNETES naming the missing variable; SLK_ERR_USAGE_CONFLICT for --service-prefix
 *   alone; ExitNodeError SLK_ERR_EXIT_INVALID_OPTION for a malformed POD_IP, namespace or prefix
 */
export async function endpointSlicesSetting (config: ResolvedConfig['config'], env: Readonly<Record<string, string | undefined>>): Promise<EndpointSlicesSetting | undefined> {
  const servicePrefix = stringSetting(config, 'service-prefix') ?? ''
  if (config['endpoint-slices'] !== true) {
    if (servicePrefix !== '') throw new CliError('SLK_ERR_USAGE_CONFLICT', '--service-prefix only applies with --endpoint-slices')
    return undefined
  }
  const missing = POD_ENV.filter((name) => (env[name] ?? '') === '')
  if (missing.length > 0) {
    throw new CliError('SLK_ERR_CONFIG_KUBERNETES', `--endpoint-slices needs the downward-API variables ${missing.join(', ')} (fieldRef metadata.name, status.podIP, metadata.namespace, metadata.uid)`)
  }
  const options = {
    namespace: env.POD_NAMESPACE ?? '',
    pod: { name: env.POD_NAME ?? '', ip: env.POD_IP ?? '', uid: env.POD_UID ?? '' },
    servicePrefix,
  }
  validateEndpointSlicePublisherOptions(options)
  // Loaded only here: @kubernetes/client-node takes seconds to import, which every other command would pay.
  const { loadKubeConfig } = await import('./kube-endpoint-slice-api.js')
  return { options, kubeConfig: loadKubeConfig(env) }
}

/** The `--check-config` report of the EndpointSlice settings (no secret: the token stays in the kube config). */
export function describeEndpointSlices (setting: EndpointSlicesSetting | undefined): unknown {
  if (setting === undefined) return 'off'
  const { namespace, pod, servicePrefix } = setting.options
  return { namespace, pod: pod.name, podIp: pod.ip, podUid: pod.uid, servicePrefix, apiServer: setting.kubeConfig.getCurrentCluster()?.server ?? 'unknown' }
}
