/**
 * Cuts a value that a peer chose (a header, an agent name, a reason built from its input) to `maxChars` for a
 * log line, saying how much was cut; a 15 KB header then costs a log line of ~150 characters, not 15 KB.
 */
export function clipUntrusted (value: string, maxChars: number): string {
  if (value.length <= maxChars) return value
  return `${value.slice(0, maxChars)}…(+${value.length - maxChars} chars)`
}
