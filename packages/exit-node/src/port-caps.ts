/**
 * Fits the connection caps of one spoke's ports into the streams a session can carry for them: when the
 * caps add up to more than `streamBudget`, each is scaled down in proportion (at least 1), so a flood
 * on one port stops at its cap with streams left for every other port. Caps that fit are kept as they are.
 */
export function fitPortCaps (caps: readonly number[], streamBudget: number): number[] {
  const sum = caps.reduce((total, cap) => total + cap, 0)
  if (sum <= streamBudget) return [...caps]
  return caps.map((cap) => Math.max(1, Math.floor(cap * streamBudget / sum)))
}
