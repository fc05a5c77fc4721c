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
    // vitest's default is one worker per core minus one: a single file at a time on a 2-core box, though most
    // e2e time is waiting (Prometheus scrapes, reconnects, an outage the remote-write test holds for 20 s).
    // Measured on 2 cores: 263 s with the default, 110 s with 3 workers.
    maxWorkers: 3,
    // `pnpm test:coverage` prints it; not a gate. The e2e tests run the built CLI as child processes,
    // which V8 coverage of this process cannot see: the numbers are those of in-process code.
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**/*.ts'],
      exclude: ['packages/testkit/**'],
      reporter: ['text-summary', 'text'],
    },
    projects: [
      {
        resolve: { alias },
        // Unit files share one module graph per worker (they mock nothing and register no globals): imports
        // took 25 of the 31 s; 17 s without them.
        test: { name: 'packages', include: ['packages/*/test/**/*.test.ts'], testTimeout: 120_000, hookTimeout: 120_000, isolate: false },
      },
      { resolve: { alias }, test: { name: 'e2e', include: ['test/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 300_000 } },
    ],
  },
})
