#!/usr/bin/env node
// The migration-fence proof in its long mode: `npm run fence-check -- [--runs N]` (default 20).
//
// Runs test/fence.test.ts (the test `npm test` runs 3 times) N times in a row: each run starts a
// private redis-server and four app processes, keeps writes flowing to four namespaces, and
// fences with the real CLI (`enable acme --wait`, a second wait during which one process is
// SIGKILLed, `enable '*' --wait`, and a wait that must time out with exit code 3). Prints
// N/N and how long `--wait` took under that load (median and maximum).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

let values;
try {
  ({ values } = parseArgs({
    options: {
      runs: { type: 'string', default: '20' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  console.error(`fence-check: ${error.message}`);
  process.exit(2);
}
if (values.help) {
  console.log('usage: npm run fence-check -- [--runs N]   (default 20)');
  process.exit(0);
}
const runs = Number(values.runs);
if (!Number.isSafeInteger(runs) || runs < 1) {
  console.error(`fence-check: --runs must be a whole number >= 1 (got ${values.runs})`);
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'nsro-fence-'));
const reportFile = join(dir, 'report.json');
console.log(`fence-check: ${runs} runs`);
const started = process.hrtime.bigint();
const result = spawnSync(
  join(root, 'node_modules', '.bin', 'vitest'),
  ['run', 'test/e2e/fence.test.ts', '--reporter=verbose'],
  {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, FENCE_RUNS: String(runs), FENCE_REPORT: reportFile },
  },
);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
if (result.error) {
  console.error(`fence-check: cannot run vitest: ${result.error.message}`);
  process.exit(1);
}

let summary = null;
try {
  summary = JSON.parse(readFileSync(reportFile, 'utf8')).summary;
} catch {
  // vitest failed before the summary was written
}
rmSync(dir, { recursive: true, force: true });

const line = (label, s) =>
  s && s.n > 0 ? `  ${label}: p50 ${s.p50} ms, max ${s.max} ms (min ${s.min}, n ${s.n})` : null;
const ok = result.status === 0 && summary?.passed === runs;
console.log(
  [
    `fence-check: ${summary?.passed ?? 0}/${runs} runs passed in ${seconds.toFixed(1)} s`,
    line('enable acme --wait under load (the wait)', summary?.fenceWaitMs),
    line('enable acme --wait under load (the CLI, spawn to exit)', summary?.fenceCliMs),
    line(
      `second wait, a process SIGKILLed 100 ms in (kill to exit; heartbeatTtl ${summary?.heartbeatTtl} ms)`,
      summary?.killToExitMs,
    ),
    line("enable '*' --wait under load (the wait)", summary?.instanceWaitMs),
  ]
    .filter(Boolean)
    .join('\n'),
);
process.exit(ok ? 0 : 1);
