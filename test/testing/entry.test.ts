import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/dist.js';

/**
 * The built `namespace-read-only/testing` (dist/, built by the global setup): it needs nothing but
 * the main entry, imported by name, so it shares the main entry's classes and runs under any test
 * framework (or none).
 */

const run = promisify(execFile);

function specifiers(file: string): string[] {
  const text = readFileSync(join(ROOT, 'dist', file), 'utf8');
  const found = [
    ...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\brequire\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1] as string);
  return [...new Set(found)].sort();
}

describe('the built testing entry', () => {
  it('imports the main entry by name and nothing else (no test framework)', () => {
    expect(specifiers('testing.js')).toEqual(['namespace-read-only']);
    expect(specifiers('testing.cjs')).toEqual(['namespace-read-only']);
  });

  it('shares the main entry classes, from ESM and from CommonJS, outside any test runner', async () => {
    const esm = `
      import * as main from 'namespace-read-only';
      import * as testing from 'namespace-read-only/testing';
      const guard = testing.createTestGuard();
      await guard.enable('acme');
      console.log(testing.MemoryStateStore === main.MemoryStateStore, guard.store instanceof main.MemoryStateStore, await guard.isReadOnly('acme'));`;
    const cjs = `
      const main = require('namespace-read-only');
      const testing = require('namespace-read-only/testing');
      const guard = testing.createTestGuard();
      guard.enable('acme').then(() => guard.isReadOnly('acme')).then((ro) =>
        console.log(testing.MemoryStateStore === main.MemoryStateStore, guard.store instanceof main.MemoryStateStore, ro));`;
    for (const [type, code] of [
      ['module', esm],
      ['commonjs', cjs],
    ] as const) {
      const { stdout } = await run(process.execPath, ['--input-type', type, '-e', code], {
        cwd: ROOT,
      });
      expect(stdout.trim(), type).toBe('true true true');
    }
  });
});
