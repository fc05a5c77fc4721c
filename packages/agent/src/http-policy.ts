import { parsePolicyRuleText, READ_ONLY_RULES } from '@spokelink/http-policy'
import type { HttpPolicy, PolicyRule } from '@spokelink/http-policy'
import { isUpstreamName } from '@spokelink/protocol'
import { AgentError } from './errors.js'

/**
 * Parses one `METHOD /path` rule of `--allow` (`GET /api/v1/*`).
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION naming the rule
 */
export function parsePolicyRule (text: string, upstream: string): PolicyRule[] {
  const parsed = parsePolicyRuleText(text)
  if ('error' in parsed) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--allow ${upstream}: ${parsed.error}`)
  return parsed.rules
}

/**
 * Parses the `--read-only NAME` and `--allow NAME='GET /a,GET /b'` lists into one policy per upstream.
 * A comma-separated list arrives split, so an item without `NAME=` continues the previous `--allow`.
 * @throws AgentError SLK_ERR_AGENT_INVALID_OPTION naming the bad item or an upstream given twice
 */
export function parseHttpPolicies (readOnly: readonly string[], allow: readonly string[]): HttpPolicy[] {
  const policies = new Map<string, HttpPolicy>()
  const add = (policy: HttpPolicy): void => {
    if (policies.has(policy.upstream)) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--read-only/--allow: upstream "${policy.upstream}" has more than one policy`)
    policies.set(policy.upstream, policy)
  }
  for (const name of readOnly) {
    if (!isUpstreamName(name)) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--read-only: expected an upstream name like "prometheus", got "${name.slice(0, 64)}"`)
    add({ upstream: name, kind: 'read-only', rules: READ_ONLY_RULES })
  }
  let current: { upstream: string, rules: PolicyRule[] } | undefined
  const finish = (): void => {
    if (current !== undefined) add({ upstream: current.upstream, kind: 'allow', rules: current.rules })
  }
  for (const item of allow) {
    const named = /^([^=\s]+)=(.*)$/.exec(item)
    if (named?.[1] !== undefined && !/^[A-Z]+ /.test(item)) {
      finish()
      const name = named[1]
      if (!isUpstreamName(name)) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--allow: expected NAME='GET /path,…' with NAME like "prometheus", got "${name.slice(0, 64)}"`)
      current = { upstream: name, rules: [] }
      if (named[2]?.trim() !== '') current.rules.push(...parsePolicyRule(named[2] ?? '', name))
      continue
    }
    if (current === undefined) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--allow: expected NAME='GET /path,…', got "${item.slice(0, 64)}"`)
    current.rules.push(...parsePolicyRule(item, current.upstream))
  }
  finish()
  for (const policy of policies.values()) {
    if (policy.rules.length === 0) throw new AgentError('SLK_ERR_AGENT_INVALID_OPTION', `--allow ${policy.upstream}: at least one rule like "GET /federate" is needed`)
  }
  return [...policies.values()]
}
