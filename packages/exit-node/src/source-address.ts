import { isIPv4, isIPv6 } from 'node:net'

/**
 * The key per-source limits count under: an IPv4 address as is (IPv4-mapped IPv6 is IPv4), an IPv6
 * address as its /64, since one host or customer is routinely given a whole /64 and could otherwise
 * rotate through 2^64 sources. Anything else (no address: the socket is already gone) is `unknown`.
 */
export function sourceKeyOf (remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return 'unknown'
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remoteAddress)
  if (mapped?.[1] !== undefined) return mapped[1]
  if (isIPv4(remoteAddress)) return remoteAddress
  if (!isIPv6(remoteAddress)) return 'unknown'
  return `${expandIPv6(remoteAddress).slice(0, 4).join(':')}::/64`
}

/** The eight 16-bit groups of an IPv6 address, lowercase without leading zeros. */
function expandIPv6 (address: string): string[] {
  const withoutZone = address.split('%')[0] ?? ''
  const [head = '', tail] = withoutZone.split('::')
  const parse = (part: string): string[] => part === '' ? [] : part.split(':')
  const left = parse(head)
  const right = tail === undefined ? [] : parse(tail)
  // An embedded IPv4 tail (::1.2.3.4) is two groups; only the first four groups matter, so count it as two.
  const rightGroups = right.flatMap((group) => group.includes('.') ? ['0', '0'] : [group])
  const zeros = Array.from({ length: Math.max(0, 8 - left.length - rightGroups.length) }, () => '0')
  return [...left, ...zeros, ...rightGroups].map((group) => (Number.parseInt(group, 16) || 0).toString(16))
}
