export { checkRequestHead, DENY_REASONS, parsePolicyRuleText, requestHeadBytes, targetPath, READ_ONLY_RULES } from './http-policy.js'
export type { DenyReason, HttpPolicy, ParsedPolicyRule, PolicyDecision, PolicyMethod, PolicyRule, RequestHead } from './http-policy.js'
export { PolicyProxy, POLICY_PROXY_DEFAULTS } from './policy-proxy.js'
export type { PolicyDenial, PolicyProxyDeps, PolicyProxyOptions } from './policy-proxy.js'
