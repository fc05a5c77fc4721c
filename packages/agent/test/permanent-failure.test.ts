import { describe, expect, test } from 'vitest'
import { ProtocolError } from '@spokelink/protocol'
import { AgentError } from '../src/errors.js'
import { permanentFailureOf } from '../src/permanent-failure.js'

describe('permanentFailureOf', () => {
  test('token, pin and version refusals are permanent; unreachable hubs, restarts and ended sessions are not', () => {
    expect(permanentFailureOf(new AgentError('SLK_ERR_AGENT_UNAUTHORIZED', 'refused (401)'))).toEqual({ code: 'SLK_ERR_AGENT_UNAUTHORIZED', reason: 'refused (401)' })
    expect(permanentFailureOf(new AgentError('SLK_ERR_AGENT_FORBIDDEN', 'revoked'))?.code).toBe('SLK_ERR_AGENT_FORBIDDEN')
    expect(permanentFailureOf(new AgentError('SLK_ERR_AGENT_TLS_PIN', 'pin'))?.code).toBe('SLK_ERR_AGENT_TLS_PIN')
    expect(permanentFailureOf(new ProtocolError('SLK_ERR_PROTO_VERSION_MISMATCH', 'v2'))?.code).toBe('SLK_ERR_PROTO_VERSION_MISMATCH')
    for (const code of ['SLK_ERR_AGENT_CONNECT', 'SLK_ERR_AGENT_SERVER_RESTARTING', 'SLK_ERR_AGENT_HELLO_REJECTED'] as const) {
      expect(permanentFailureOf(new AgentError(code, 'x'))).toBeUndefined()
    }
    expect(permanentFailureOf(undefined)).toBeUndefined()
    expect(permanentFailureOf(new Error('no code'))).toBeUndefined()
  })
})
