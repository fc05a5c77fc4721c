/** One token line of a spokes file: a `CreatedSpokeToken` from `@spokelink/auth` fits as it is. */
export interface SpokesYamlToken {
  id: string
  sha256: string
  expires?: Date
  revoked?: boolean
}

/** One spoke of {@link spokesYaml}: its tokens and the data-plane ports (on 127.0.0.1) of its upstreams. */
export interface SpokesYamlSpoke {
  name: string
  labels?: Record<string, string>
  /** Writes `requireClientCert: true`: the spoke's agents connect with a certificate issued over a bootstrap session. */
  requireClientCert?: boolean
  tokens: readonly SpokesYamlToken[]
  ports: ReadonlyArray<{ upstream: string, port: number }>
}

/**
 * The text of a spokes file for `spokes`, as an operator would write it (flow-style token and port
 * lines, `[]` for an empty list, which `spokelink token create` can edit in place). Feed it to `parseSpokesConfig(text, 'test')` for an in-process exit-node, or write it to a
 * file for the CLI.
 */
export function spokesYaml (spokes: readonly SpokesYamlSpoke[]): string {
  const lines = ['spokes:']
  for (const spoke of spokes) {
    lines.push(`  - name: ${spoke.name}`)
    if (spoke.labels !== undefined) {
      lines.push(`    labels: {${Object.entries(spoke.labels).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(', ')}}`)
    }
    if (spoke.requireClientCert === true) lines.push('    requireClientCert: true')
    lines.push(spoke.tokens.length === 0 ? '    tokens: []' : '    tokens:')
    for (const token of spoke.tokens) {
      const expires = token.expires === undefined ? '' : `, expires: "${token.expires.toISOString()}"`
      const revoked = token.revoked === undefined ? '' : `, revoked: ${String(token.revoked)}`
      lines.push(`      - {id: "${token.id}", sha256: "${token.sha256}"${expires}${revoked}}`)
    }
    lines.push(spoke.ports.length === 0 ? '    ports: []' : '    ports:')
    for (const port of spoke.ports) lines.push(`      - {upstream: ${port.upstream}, listen: "127.0.0.1:${port.port}"}`)
  }
  return `${lines.join('\n')}\n`
}
