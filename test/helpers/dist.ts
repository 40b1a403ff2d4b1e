import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The built package, for the tests that run it as a user would (the CLI, the fence's app
 * processes). It is built once per test run, by the global setup, never by a test file: two
 * files building at once would wipe `dist/` under each other.
 */

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'dist', 'bin.js');
export const INDEX = join(ROOT, 'dist', 'index.js');

/** Newest modification time of any source file. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when it is missing or older than src/. */
export function buildIfStale(): void {
  const newest = newestSource(join(ROOT, 'src'));
  const stale = [BIN, INDEX].some((file) => !existsSync(file) || statSync(file).mtimeMs < newest);
  if (stale) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'pipe', timeout: 300_000 });
}
