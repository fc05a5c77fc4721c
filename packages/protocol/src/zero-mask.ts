/**
 * A `generateMask` for the agent's `ws` client: an all-zero masking key, which `ws` recognises and
 * skips, saving a copy of every byte sent. RFC 6455 masking protects intermediaries from payload
 * bytes chosen by untrusted browser script; the agent is not a browser and its payload is yamux
 * framing of its own streams, so a constant key loses nothing. Frames stay RFC-shaped (MASK bit set).
 */
export function generateZeroMask (mask: Buffer): void {
  mask.fill(0)
}
