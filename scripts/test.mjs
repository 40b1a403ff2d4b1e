#!/usr/bin/env node
// The whole suite, in one command (`npm test`, called by .ci/run), for a fresh Debian machine with
// Node 20: installs what is missing, then lint, typecheck, build, the consumer smoke test, the
// quick benchmarks and vitest. The last line printed is always `N passed, N failed` (vitest's
// tests plus the consumer smoke checks and the benchmark check); the exit code is non-zero if anything failed or if no test ran.
//
// Plain Node ESM with builtins only: it runs before `npm ci`. Never reads stdin (CI=true is fine).

import { spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

const REPORT = '.vitest-report.json';
let passed = 0;
let failed = 0;

function header(title) {
  console.log(`\n=== ${title} ===`);
}

/** Runs a command with output shown and no stdin; returns its exit status. */
function sh(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, ...env },
  });
  if (r.error) {
    console.error(`cannot run ${cmd}: ${r.error.message}`);
    return 127;
  }
  return r.status ?? 1;
}

/** Ends the run: the tally is always the last line printed. */
function finish(extraFailures = 0) {
  const totalFailed = failed + extraFailures;
  console.log(`${passed} passed, ${totalFailed} failed`);
  process.exit(totalFailed > 0 || passed === 0 ? 1 : 0);
}

/** A set-up step: stops the run at the first failure, which counts as one failed test. */
function step(title, cmd, args, env) {
  header(title);
  const status = sh(cmd, args, env);
  if (status !== 0) {
    console.error(`\n${title}: failed (exit code ${status})`);
    finish(1);
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

// a. Dependencies.
function installReason() {
  if (!existsSync('node_modules')) return 'node_modules is missing';
  // npm writes node_modules/.package-lock.json after package-lock.json on every install.
  const marker = existsSync('node_modules/.package-lock.json')
    ? 'node_modules/.package-lock.json'
    : 'node_modules';
  if (statSync(marker).mtimeMs < statSync('package-lock.json').mtimeMs) {
    return 'node_modules is older than package-lock.json';
  }
  return null;
}
const reason = installReason();
if (reason) {
  header(`npm ci (${reason})`);
  // `npm ci` refuses a lockfile that lacks entries for other platforms' optional binaries
  // (@biomejs/cli-*, @rollup/rollup-*), which happens when the registry that wrote it does not
  // serve them. `npm install --no-save` then installs the same locked versions without rewriting
  // package-lock.json, so fall back to it.
  const ci = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (ci.status === 0) {
    process.stdout.write(ci.stdout);
  } else {
    const ciOutput = `${ci.stdout ?? ''}${ci.stderr ?? ''}${ci.error?.message ?? ''}`;
    const why = ciOutput.includes('in sync') ? 'lockfile not in sync' : `exit code ${ci.status}`;
    console.log(
      `npm ci failed (${why}); falling back to npm install --no-save with the same lockfile`,
    );
    if (sh('npm', ['install', '--no-save', '--no-audit', '--no-fund']) !== 0) {
      console.error(`\nnpm ci said:\n${ciOutput}\ndependencies: npm install failed too`);
      finish(1);
    }
  }
} else {
  header('dependencies: node_modules is up to date');
}

// b. redis-server, for the Redis-backed tests (they start their own server on a loopback port).
// The package brings redis-cli too; the Sentinel test runs `redis-server --sentinel`, which is
// what Debian's redis-sentinel is, so that package is not needed.
if (onPath('redis-server')) {
  header('redis-server: found');
} else if (process.getuid?.() === 0) {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  step('apt-get update (redis-server is missing)', 'apt-get', ['update'], env);
  step('apt-get install redis-server', 'apt-get', ['install', '-y', 'redis-server'], env);
  if (!onPath('redis-server')) {
    console.error('redis-server is still not on PATH after apt-get install');
    finish(1);
  }
} else {
  header('redis-server: missing');
  console.error(
    'redis-server is not on PATH and this is not root, so it cannot be installed here.\n' +
      'Install it first (Debian: sudo apt-get install -y redis-server), then run npm test again.',
  );
  finish(1);
}

// b2. promtool, for the Prometheus alerting rules' own checks (examples/prometheus): taken out of
// Debian's prometheus package into node_modules/.cache, never installed system-wide (the package
// would start a Prometheus server). The vitest check finds it there.
const PROMTOOL_DIR = resolve('node_modules', '.cache', 'promtool');
const PROMTOOL = join(PROMTOOL_DIR, 'usr', 'bin', 'promtool');
if (onPath('promtool') || existsSync(PROMTOOL)) {
  header('promtool: found');
} else {
  header("promtool: taking it out of Debian's prometheus package");
  const download = () =>
    spawnSync('apt-get', ['download', 'prometheus'], { cwd: PROMTOOL_DIR, stdio: 'inherit' })
      .status;
  mkdirSync(PROMTOOL_DIR, { recursive: true });
  if (download() !== 0 && process.getuid?.() === 0) {
    sh('apt-get', ['update'], { DEBIAN_FRONTEND: 'noninteractive' });
    download();
  }
  const deb = readdirSync(PROMTOOL_DIR).find((f) => f.endsWith('.deb'));
  if (deb === undefined || sh('dpkg-deb', ['-x', join(PROMTOOL_DIR, deb), PROMTOOL_DIR]) !== 0) {
    console.error(
      "promtool: could not get Debian's prometheus package (apt-get download prometheus)",
    );
    finish(1);
  }
  rmSync(join(PROMTOOL_DIR, deb), { force: true });
}

// c. Static checks and the build.
step('lint', 'npm', ['run', 'lint']);
step('typecheck', 'npm', ['run', 'typecheck']);
step('build', 'npm', ['run', 'build']);

// d. Consumer smoke test on the packed package (each check counts as one test).
header('consumer smoke test');
const { runConsumerSmoke, smokeSummary } = await import('./consumer-smoke.mjs');
const smoke = runConsumerSmoke();
for (const r of smoke) {
  if (r.ok) passed += 1;
  else failed += 1;
}
console.log(smokeSummary(smoke));

// d2. The benchmarks in quick mode (one check): they must still run and answer right; how fast
// is not checked here.
header('benchmarks: npm run bench -- --quick');
const benchOk = sh('npm', ['run', 'bench', '--', '--quick']) === 0;
if (benchOk) passed += 1;
else failed += 1;

// e. Unit and integration tests.
header('vitest');
rmSync(REPORT, { force: true });
const vitestStatus = sh(join('node_modules', '.bin', 'vitest'), [
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${REPORT}`,
]);

header('summary');
let report = null;
try {
  report = JSON.parse(readFileSync(REPORT, 'utf8'));
} catch (err) {
  console.log(`vitest: no readable ${REPORT} (${err.code ?? err.message}); counted as 1 failure`);
  failed += 1;
}
if (report) {
  const vPassed = report.numPassedTests ?? 0;
  const vFailed = report.numFailedTests ?? 0;
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  passed += vPassed;
  failed += vFailed;
  console.log(
    `vitest: ${vPassed} passed, ${vFailed} failed, ${skipped} skipped ` +
      `in ${(report.testResults ?? []).length} files`,
  );
  // A file that fails to load (or a hook that throws) fails with no failed test in it.
  const broken = (report.testResults ?? []).filter(
    (f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed'),
  );
  for (const f of broken) {
    const first = String(f.message ?? '').split('\n')[0];
    console.log(
      `vitest: ${relative(root, f.name)} failed outside any test: ${first}; counted as 1 failure`,
    );
    failed += 1;
  }
  if ((report.numTotalTests ?? 0) === 0) {
    console.log('vitest: ran no tests; counted as 1 failure');
    failed += 1;
  } else if (vitestStatus !== 0 && vFailed === 0 && broken.length === 0) {
    console.log(
      `vitest: exited with code ${vitestStatus} (e.g. unhandled errors); counted as 1 failure`,
    );
    failed += 1;
  }
}
const smokeFailed = smoke.filter((r) => !r.ok).map((r) => r.name);
console.log(
  `consumer smoke: ${smoke.length - smokeFailed.length} passed, ${smokeFailed.length} failed` +
    (smokeFailed.length > 0 ? ` (${smokeFailed.join(', ')})` : ''),
);
console.log(`benchmarks (quick): ${benchOk ? 'ran' : 'FAILED'}`);

// f. The line CI counts.
finish();
