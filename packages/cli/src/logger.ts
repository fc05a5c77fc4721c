import pino from 'pino'
import type { Logger, LevelWithSilent } from 'pino'

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

/** Whether `level` is a pino level name. */
export function isLogLevel (level: string): level is LevelWithSilent {
  return LEVELS.has(level)
}

/**
 * The root logger: JSON to stdout, one event per line. `redact` is a backstop only; no code path
 * logs a token on purpose.
 */
export function createRootLogger (level: LevelWithSilent): Logger {
  return pino({
    level,
    base: { service: 'spokelink' },
    redact: { paths: ['token', '*.token', 'joinToken', '*.joinToken', 'headers.authorization', '*.headers.authorization', 'config.token', 'config.join'], censor: '[redacted]' },
  })
}
