import { describe, expect, test } from 'vitest'
import { parseSpokesConfig } from '@spokelink/auth'
import { buildTargetGroups } from '@spokelink/exit-node'

const spokes = parseSpokesConfig(`
spokes:
  - name: orion-aws
    labels: {cluster: orion-aws, env: prod}
    tokens: []
    ports:
      - {upstream: prometheus, listen: "0.0.0.0:19090"}
  - name: orion-gcp
    labels: {cluster: orion-gcp}
    tokens: []
    ports:
      - {upstream: prometheus, listen: "10.0.0.5:19091"}
`, 'test')

describe('buildTargetGroups', () => {
  test('one group per spoke port with __meta_spokelink_* labels', () => {
    const groups = buildTargetGroups(spokes, (spoke) => spoke === 'orion-aws', '{host}:{port}', 'exit-node.monitoring.svc')
    expect(groups).toEqual([
      {
        targets: ['exit-node.monitoring.svc:19090'],
        labels: { __meta_spokelink_spoke: 'orion-aws', __meta_spokelink_upstream: 'prometheus', __meta_spokelink_connected: 'true', __meta_spokelink_label_cluster: 'orion-aws', __meta_spokelink_label_env: 'prod' },
      },
      {
        targets: ['10.0.0.5:19091'],
        labels: { __meta_spokelink_spoke: 'orion-gcp', __meta_spokelink_upstream: 'prometheus', __meta_spokelink_connected: 'false', __meta_spokelink_label_cluster: 'orion-gcp' },
      },
    ])
  })

  test('the template addresses per-spoke Services', () => {
    const groups = buildTargetGroups(spokes, () => true, '{spoke}.monitoring.svc:9090', 'ignored')
    expect(groups.map((group) => group.targets[0])).toEqual(['orion-aws.monitoring.svc:9090', 'orion-gcp.monitoring.svc:9090'])
  })
})
