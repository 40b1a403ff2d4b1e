#!/usr/bin/env node
// `npm run demo [-- --serve | --port N]`: the walk-through in examples/demo.mjs, on a fresh clone.
// Installs the dependencies when node_modules is missing, builds dist/ when it is missing or older
// than src/, then runs the example with the arguments given and exits with its exit code.
//
// Plain Node ESM with builtins only: it runs before `npm ci`.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Runs a command with its output shown and no stdin; returns its exit status. */
function sh(cmd, args) {
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    shell: process.platform === 'win32',
  });
  if (r.error) {
    console.error(`cannot run ${cmd}: ${r.error.message}`);
    return 127;
  }
  return r.status ?? 1;
}

function fail(message) {
  console.error(`demo: ${message}`);
  process.exit(1);
}

/** The newest modification time of any file under `dir`. */
function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

// 1. Dependencies.
if (!existsSync('node_modules')) {
  console.log('demo: node_modules is missing; running npm ci');
  const ci = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    shell: process.platform === 'win32',
  });
  if (ci.status === 0) {
    process.stdout.write(ci.stdout);
  } else {
    // npm ci refuses a lockfile that lacks other platforms' optional binaries (@biomejs/cli-*,
    // @rollup/rollup-*). `npm install --no-save` installs the same locked versions without
    // rewriting package-lock.json.
    const output = `${ci.stdout ?? ''}${ci.stderr ?? ''}${ci.error?.message ?? ''}`;
    const why = output.includes('in sync') ? 'lockfile not in sync' : `exit code ${ci.status}`;
    console.log(
      `demo: npm ci failed (${why}); running npm install --no-save with the same lockfile`,
    );
    if (sh(npm, ['install', '--no-save', '--no-audit', '--no-fund']) !== 0) {
      console.error(output);
      fail('installing the dependencies failed');
    }
  }
}

// 2. The build: the example imports the package by name, which resolves to dist/.
const built = 'dist/index.js';
const stale = !existsSync(built) || statSync(built).mtimeMs < newestMtime('src');
if (stale) {
  console.log(
    `demo: ${existsSync(built) ? 'dist/ is older than src/' : 'dist/ is missing'}; running npm run build`,
  );
  if (sh(npm, ['run', 'build']) !== 0) fail('the build failed');
  console.log();
}

// 3. The walk-through, with the arguments passed through.
const child = spawn(process.execPath, [join('examples', 'demo.mjs'), ...process.argv.slice(2)], {
  stdio: 'inherit',
});

// Ctrl-C reaches the child through the terminal; a signal sent to this process alone is passed on.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on('error', (error) => fail(`cannot run examples/demo.mjs: ${error.message}`));
child.on('exit', (code, signal) => {
  // Killed by a signal: the shell convention, 128 + the signal's number.
  process.exit(signal === null ? (code ?? 1) : 128 + (constants.signals[signal] ?? 0));
});
