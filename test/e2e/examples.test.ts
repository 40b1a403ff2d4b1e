import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/dist.js';

/**
 * The examples run as written: `node examples/<file>.mjs`, importing the package by its name
 * (Node resolves a package's own name through its `exports`, so they use dist/ as a user would).
 */

const run = promisify(execFile);
const example = (file: string) => join(ROOT, 'examples', file);
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill();
});

describe('examples', () => {
  it('programmatic-checks.mjs --check: every case answers as it says', async () => {
    const { stdout } = await run(
      process.execPath,
      [example('programmatic-checks.mjs'), '--check'],
      {
        cwd: ROOT,
      },
    );
    // A mismatch makes it exit 1, which rejects here; the last line says so as well.
    expect(stdout).toContain('Every case answered as expected.');
  });

  it('demo.mjs: every step of the walk-through', async () => {
    const { stdout } = await run(process.execPath, [example('demo.mjs')], { cwd: ROOT });
    expect(stdout).toContain('Every step answered as expected.');
  });

  it('basic.mjs: refuses writes to the namespace in READ_ONLY, and nothing else', async () => {
    const child = spawn(process.execPath, [example('basic.mjs')], {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', READ_ONLY: 'acme' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const base = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        const found = /listening on (http:\/\/\S+)/.exec(out);
        if (found?.[1] !== undefined) resolve(found[1]);
      });
      child.on('exit', (code) => reject(new Error(`basic.mjs exited (${code}) before listening`)));
    });
    const post = (path: string) =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"title":"x"}',
      });
    const refused = await post('/acme/proj/-/issues');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('x-namespace-read-only')).toBe('acme');
    expect((await post('/beta/proj/-/issues')).status).toBe(201);
    expect((await fetch(`${base}/acme/proj`)).status).toBe(200);
  });
});
