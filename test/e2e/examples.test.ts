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

  it('metrics.mjs: /metrics counts the refused, the admitted and the bypassed write', async () => {
    const child = spawn(process.execPath, [example('metrics.mjs')], {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', READ_ONLY: 'acme' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const { base, token } = await new Promise<{ base: string; token: string }>(
      (resolve, reject) => {
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString('utf8');
          const listening = /listening on (http:\/\/\S+)/.exec(out);
          const minted = /bypass token for acme: (\S+)/.exec(out);
          if (listening?.[1] !== undefined && minted?.[1] !== undefined) {
            resolve({ base: listening[1], token: minted[1] });
          }
        });
        child.on('exit', (code) =>
          reject(new Error(`metrics.mjs exited (${code}) before listening`)),
        );
      },
    );
    const post = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: '{"title":"x"}',
      });
    expect((await post('/acme/proj/-/issues')).status).toBe(503);
    expect((await post('/beta/proj/-/issues')).status).toBe(201);
    expect(
      (await post('/acme/proj/-/issues', { 'x-namespace-read-only-bypass': token })).status,
    ).toBe(201);

    const scrape = await fetch(`${base}/metrics`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await scrape.text();
    const line = (sample: string) => text.split('\n').find((l) => l.startsWith(`${sample} `));
    expect(line('nsro_decisions_total{outcome="refused",reason="maintenance"}')).toMatch(/ 1$/);
    expect(line('nsro_decisions_total{outcome="admitted",reason="none"}')).toMatch(/ 1$/);
    expect(line('nsro_decisions_total{outcome="bypassed",reason="maintenance"}')).toMatch(/ 1$/);
    expect(line('nsro_refused_total{namespace="acme"}')).toMatch(/ 1$/);
    expect(line('nsro_namespaces_in_maintenance')).toMatch(/ 1$/);
    expect(line('nsro_push_up')).toMatch(/ 1$/);
    // The process's own metrics, beside the guard's.
    expect(text).toContain('process_cpu_user_seconds_total');
  });
});
