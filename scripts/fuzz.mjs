#!/usr/bin/env node
// The differential fuzzer at any size: `npm run fuzz -- --runs N --seed S`.
//
// Runs test/fuzz.test.ts (the same property `npm test` runs with 5,000 requests and a fixed seed)
// with N raw requests in all, half on Express 5 and half on Express 4. Without --seed a fresh seed
// is drawn and printed, so every run explores new ground and any failure can be replayed. A
// failure prints the seed, fast-check's shrink path and the shrunk request byte for byte.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

let values;
try {
  ({ values } = parseArgs({
    options: {
      runs: { type: 'string', default: '20000' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  console.error(`fuzz: ${error.message}`);
  process.exit(2);
}
if (values.help) {
  console.log('usage: npm run fuzz -- [--runs N] [--seed S]   (N requests in all, default 20000)');
  process.exit(0);
}
const runs = Number(values.runs);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isSafeInteger(runs) || runs < 2) {
  console.error(`fuzz: --runs must be a whole number >= 2 (got ${values.runs})`);
  process.exit(2);
}
if (!Number.isSafeInteger(seed)) {
  console.error(`fuzz: --seed must be an integer (got ${values.seed})`);
  process.exit(2);
}

console.log(`fuzz: ${runs} requests, seed ${seed}`);
const started = process.hrtime.bigint();
const result = spawnSync(
  join('node_modules', '.bin', 'vitest'),
  ['run', 'test/e2e/fuzz.test.ts', '--reporter=verbose'],
  {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, FUZZ_RUNS: String(runs), FUZZ_SEED: String(seed) },
  },
);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
if (result.error) {
  console.error(`fuzz: cannot run vitest: ${result.error.message}`);
  process.exit(1);
}
const ok = result.status === 0;
console.log(
  `fuzz: ${ok ? 'clean' : 'FAILED'}: ${runs} requests, seed ${seed}, ${seconds.toFixed(1)} s` +
    (ok ? '' : ` (replay: npm run fuzz -- --runs ${runs} --seed ${seed})`),
);
process.exit(result.status ?? 1);
