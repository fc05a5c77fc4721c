/**
 * WebSocket close codes of the control connection, shared by both ends so the agent learns why it was
 * closed from the code, never from the reason text. 1001 is RFC 6455 "going away" and 1012 its "service restart"; 4000–4999 is the
 * application range, and ours mirror the HTTP status an operator would expect.
 */
export const CLOSE_CODE = {
  /** The exit-node is shutting down on purpose (after its GoAway); the agent logs a planned restart. */
  GOING_AWAY: 1001,
  /**
   * RFC 6455 "service restart": the spoke's ports changed and the agent reconnects to get the new ones; a routine
   * event the agent logs at info, not a refusal.
   */
  RECONFIGURED: 1012,
  /** The agent sent no valid hello in time. */
  HELLO_FAILED: 4400,
  /** The session's token was revoked or expired, or its spoke removed or changed. */
  REVOKED: 4403,
  /** The spoke already has as many sessions as the exit-node allows. */
  SESSION_LIMIT: 4429,
} as const

/** A value of {@link CLOSE_CODE}. */
export type CloseCode = typeof CLOSE_CODE[keyof typeof CLOSE_CODE]

/** The name of a close code we define (`REVOKED`), or `undefined` for any other code. */
export function closeCodeName (code: number): keyof typeof CLOSE_CODE | undefined {
  for (const [name, value] of Object.entries(CLOSE_CODE)) {
    if (value === code) return name as keyof typeof CLOSE_CODE
  }
  return undefined
}
