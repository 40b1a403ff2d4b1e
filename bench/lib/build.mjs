// `npm run bench` imports the package by name, which resolves to dist/: build it when it is
// missing or older than src/ (the same rule as `npm run demo`).

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './common.mjs';

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

/** Builds dist/ if needed; throws when the build fails. Returns why it built, or null. */
export function ensureBuilt() {
  const built = join(ROOT, 'dist', 'index.js');
  const bin = join(ROOT, 'dist', 'bin.js');
  const src = newestMtime(join(ROOT, 'src'));
  let reason = null;
  if (!existsSync(built) || !existsSync(bin)) reason = 'dist/ is missing';
  else if (statSync(built).mtimeMs < src) reason = 'dist/ is older than src/';
  if (reason === null) return null;
  console.log(`bench: ${reason}; running npm run build`);
  const r = spawnSync('npm', ['run', 'build'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`npm run build failed (exit code ${r.status})`);
  return reason;
}
