import { describe, expect, test } from 'vitest'
import { buildEndpointSlice, endpointSliceMatches, endpointSliceName, servicePortName } from '../src/endpoint-slice-manifest.js'

const pod = { name: 'spokelink-exit-node-7d9f8c6b5-x2x4q', ip: '10.244.0.7', uid: '0b7e6a52-4c2f-4a8e-9f7e-2f3c1d0e9a11' }

describe('endpoint slice manifest', () => {
  test('the name is the Service plus 10 hex of sha256(pod name): one per (spoke, pod), bounded length', () => {
    expect(endpointSliceName('orion-aws', pod.name)).toMatch(/^orion-aws-[0-9a-f]{10}$/)
    expect(endpointSliceName('orion-aws', pod.name)).toBe(endpointSliceName('orion-aws', pod.name))
    expect(endpointSliceName('orion-aws', `${pod.name}-other`)).not.toBe(endpointSliceName('orion-aws', pod.name))
    expect(endpointSliceName('a'.repeat(63), 'p'.repeat(253))).toHaveLength(74)
  })

  test('port names follow the chart: upstream lower-cased, _ to -, 15 characters, no edge dashes', () => {
    expect(servicePortName('prometheus')).toBe('prometheus')
    expect(servicePortName('Alert_Manager')).toBe('alert-manager')
    expect(servicePortName('a-very-long-upstream-name')).toBe('a-very-long-ups')
    expect(servicePortName('abcdefghijklmn-x')).toBe('abcdefghijklmn')
  })

  test('a slice carries the pod IP, ready, each port by upstream name and p<port>, owned by the pod', () => {
    const slice = buildEndpointSlice('orion-aws', 'spoke-orion-aws', pod, [
      { upstream: 'prometheus', host: '0.0.0.0', port: 19090 },
      { upstream: 'alertmanager', host: '0.0.0.0', port: 19093 },
    ])
    expect(slice).toEqual({
      name: endpointSliceName('spoke-orion-aws', pod.name),
      labels: { 'kubernetes.io/service-name': 'spoke-orion-aws', 'endpointslice.kubernetes.io/managed-by': 'spokelink', 'spokelink.dev/spoke': 'orion-aws' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid }],
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.0.7'], ready: true, targetPod: { name: pod.name, uid: pod.uid } }],
      ports: [
        { name: 'alertmanager', port: 19093, protocol: 'TCP' },
        { name: 'p19090', port: 19090, protocol: 'TCP' },
        { name: 'p19093', port: 19093, protocol: 'TCP' },
        { name: 'prometheus', port: 19090, protocol: 'TCP' },
      ],
    })
    expect(buildEndpointSlice('s', 's', { ...pod, ip: 'fd00::7' }, []).addressType).toBe('IPv6')
  })

  test('a stored slice matches whatever order and extra labels the API returns, and not when anything spokelink sets differs', () => {
    const desired = buildEndpointSlice('orion', 'orion', pod, [{ upstream: 'prometheus', host: '0.0.0.0', port: 19090 }])
    const stored = { ...desired, labels: { ...desired.labels, extra: 'x' }, ports: [...desired.ports].reverse() }
    expect(endpointSliceMatches(stored, desired)).toBe(true)
    expect(endpointSliceMatches({ ...stored, endpoints: [{ addresses: ['10.244.0.8'], ready: true }] }, desired)).toBe(false)
    expect(endpointSliceMatches({ ...stored, endpoints: [{ addresses: [pod.ip], ready: false }] }, desired)).toBe(false)
    expect(endpointSliceMatches({ ...stored, ports: desired.ports.slice(1) }, desired)).toBe(false)
    expect(endpointSliceMatches({ ...stored, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: 'other' }] }, desired)).toBe(false)
    expect(endpointSliceMatches({ ...stored, labels: { ...stored.labels, 'kubernetes.io/service-name': 'x' } }, desired)).toBe(false)
  })
})
