import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const src = (pkg: string): string => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url))

const alias = {
  '@spokelink/errors': src('errors'),
  '@spokelink/http-policy': src('http-policy'),
  '@spokelink/protocol': src('protocol'),
  '@spokelink/auth': src('auth'),
  '@spokelink/exit-node': src('exit-node'),
  '@spokelink/agent': src('agent'),
  '@spokelink/testkit': src('testkit'),
  spokelink: src('cli'),
}

export default defineConfig({
  resolve: { alias },
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // `pnpm test:coverage` prints it; not a gate. The e2e tests run the built CLI as child processes,
    // which V8 coverage of this process cannot see: the numbers are those of in-process code.
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**/*.ts'],
      exclude: ['packages/testkit/**'],
      reporter: ['text-summary', 'text'],
    },
    projects: [
      { resolve: { alias }, test: { name: 'packages', include: ['packages/*/test/**/*.test.ts'], testTimeout: 120_000, hookTimeout: 120_000 } },
      { resolve: { alias }, test: { name: 'e2e', include: ['test/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 300_000, fileParallelism: false } },
    ],
  },
})
