import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (path: string) => fileURLToPath(new URL(`./src/${path}`, import.meta.url));

export default defineConfig({
  resolve: {
    // The package's own name is the source in the suite, as in tsconfig.json's `paths`: the
    // subpath entries import the main one by name, and a test must meet the classes it imports.
    alias: [
      { find: /^namespace-read-only$/, replacement: src('index.ts') },
      { find: /^namespace-read-only\/testing$/, replacement: src('testing/index.ts') },
      { find: /^namespace-read-only\/bullmq$/, replacement: src('jobs/bullmq.ts') },
    ],
  },
  test: {
    // The examples' own tests run as a user's would, on the package's name (aliased above).
    include: ['test/**/*.test.ts', 'examples/**/*.test.mjs'],
    globalSetup: ['test/global-setup.ts'],
    environment: 'node',
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
});
