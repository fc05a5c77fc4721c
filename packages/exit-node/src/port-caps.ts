/**
 * Fits the connection caps of one spoke's ports into the streams a session can carry for them. Caps that
 * add up to no more than `streamBudget` are kept as they are; otherwise the budget is split max-min fair
 * (smallest cap first, each port gets its cap or an equal share of what is left, whichever is less, and
 * at least 1), so a flood on one port stops at its cap with streams left for every other port.
 */
export function fitPortCaps (caps: readonly number[], streamBudget: number): number[] {
  const sum = caps.reduce((total, cap) => total + cap, 0)
  if (sum <= streamBudget) return [...caps]
  const fitted = new Array<number>(caps.length).fill(0)
  const order = caps.map((cap, i) => ({ cap, i })).sort((x, y) => x.cap - y.cap)
  let remaining = streamBudget
  for (const [n, { cap, i }] of order.entries()) {
    const share = Math.floor(remaining / (order.length - n))
    const given = Math.max(1, Math.min(cap, share))
    fitted[i] = given
    remaining = Math.max(0, remaining - given)
  }
  return fitted
}
