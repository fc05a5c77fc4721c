const SHA256_HEX = /^[0-9a-fA-F]{64}$/

/** Whether `value` is a SHA-256 digest as 64 hex characters (either case): token hashes, CA pins. */
export function isSha256Hex (value: string): boolean {
  return SHA256_HEX.test(value)
}
