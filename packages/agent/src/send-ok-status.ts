import type { Duplex } from 'node:stream'
import { STREAM_STATUS, writeStreamStatus } from '@spokelink/protocol'

/**
 * Writes the OK status byte just before the upstream's first bytes (or its end), so that status and
 * answer reach the exit-node in one message instead of two. The exit-node already sends the client's
 * bytes without waiting for the status, so holding it delays nothing; an upstream that stays silent
 * (it waits for a slow request) gets its status after `holdMs`, well inside the exit-node's open timeout.
 *
 * Call before the upstream is relayed: these listeners must run before the relay's.
 */
export function sendOkStatusWithFirstBytes (stream: Duplex, upstream: Duplex, holdMs: number): void {
  const send = (): void => {
    cancel()
    writeStreamStatus(stream, STREAM_STATUS.OK)
  }
  const cancel = (): void => {
    clearTimeout(timer)
    upstream.off('data', send)
    upstream.off('end', send)
    stream.off('close', cancel)
  }
  const timer = setTimeout(send, holdMs)
  upstream.once('data', send)
  upstream.once('end', send)
  stream.once('close', cancel)
}
