import { defineConfig } from 'tsup';

export default defineConfig([
  {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    target: 'node20',
    platform: 'node',
    sourcemap: true,
    splitting: false,
    treeshake: true,
    // `import.meta.url` in the CommonJS build too (from `__filename`): optional peers are
    // required from the package's own location (src/observe/optional.ts).
    shims: true,
  },
  // The subpath entries (`namespace-read-only/testing`, `/bullmq`): they import the main entry by
  // the package's own name, left external, so that an application and its tests share one copy
  // of every class (an `instanceof` across entries holds) and no code is bundled twice.
  {
    entry: { testing: 'src/testing/index.ts', bullmq: 'src/jobs/bullmq.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    clean: false,
    target: 'node20',
    platform: 'node',
    sourcemap: true,
    splitting: false,
    treeshake: true,
    external: ['namespace-read-only', 'bullmq'],
  },
  // The operator CLI: one ESM file with its shebang, named by package.json `bin`.
  {
    entry: ['src/bin.ts'],
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    sourcemap: true,
    splitting: false,
    clean: false,
  },
]);
