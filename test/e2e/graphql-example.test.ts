import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/dist.js';

/**
 * examples/graphql: mutations behind the allowlisted `POST /api/graphql` ask the guard, and
 * answer a refusal as a GraphQL error with the guard's code. Run as written (server.mjs), and its
 * schema on Express 4 and 5 (a fixture), both on the built package as a user's app would be.
 */

const SERVER = join(ROOT, 'examples', 'graphql', 'server.mjs');
const FIXTURE = join(ROOT, 'test', 'e2e', 'fixtures', 'graphql-app.mjs');

const createIssue = (project: string) =>
  `mutation { createIssue(project: ${JSON.stringify(project)}, title: "Hi") { id project } }`;
const issues = (project: string) => `{ issues(project: ${JSON.stringify(project)}) { id title } }`;

interface GraphqlResult {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill();
});

/** Starts `file`; resolves with its base URL and a way to wait for a line it prints. */
async function start(file: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [file], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (const wake of waiters) wake();
  });
  const printed = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const look = () => {
        const found = pattern.exec(out);
        if (found === null) return;
        waiters.delete(look);
        resolve(found);
      };
      waiters.add(look);
      child.on('exit', (code) => reject(new Error(`${file} exited (${code})`)));
      look();
    });
  const [, base = ''] = await printed(/listening on (http:\/\/\S+)/);
  /** One stdin command for the fixture, resolved once it is done. */
  const command = async (line: string) => {
    child.stdin?.write(`${line}\n`);
    await printed(new RegExp(`done ${line.replace(/[^\w ]/g, '\\$&')}\\n`));
  };
  const ask = async (query: string) => {
    const res = await fetch(`${base}/api/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query }),
    });
    // The guard let the request itself through: it is allowlisted, whatever it carries.
    expect(res.status).toBe(200);
    expect(res.headers.get('x-namespace-read-only')).toBeNull();
    return (await res.json()) as GraphqlResult;
  };
  return { ask, command };
}

describe('examples/graphql/server.mjs, run as written', () => {
  it('refuses a mutation on acme with ERR_NSRO_MAINTENANCE, and nothing else', async () => {
    const { ask } = await start(SERVER, { READ_ONLY: 'acme' });
    const refused = await ask(createIssue('acme/proj'));
    expect(refused.data).toEqual({ createIssue: null });
    expect(refused.errors?.[0]?.extensions).toEqual({
      code: 'ERR_NSRO_MAINTENANCE',
      namespace: 'acme',
      retryAfter: 900,
    });
    expect(await ask(createIssue('beta/app'))).toEqual({
      data: { createIssue: { id: '1', project: 'beta/app' } },
    });
    expect(await ask(issues('acme/proj'))).toEqual({ data: { issues: [] } });
  });
});

describe.each([
  { name: 'express 5', EXPRESS: 'express' },
  { name: 'express 4', EXPRESS: 'express4' },
])('examples/graphql/schema.mjs ($name)', ({ EXPRESS }) => {
  it('refuses mutations while their namespace is read-only, runs them once writable; queries always answer', async () => {
    const { ask, command } = await start(FIXTURE, { EXPRESS });

    await command('set acme {"state":"maintenance","message":"Moving acme","reason":"migration"}');
    const refused = await ask(createIssue('acme/proj'));
    expect(refused.data).toEqual({ createIssue: null });
    expect(refused.errors?.[0]?.message).toBe('Moving acme');
    expect(refused.errors?.[0]?.extensions).toEqual({
      code: 'ERR_NSRO_MAINTENANCE',
      namespace: 'acme',
      reason: 'migration',
      retryAfter: 900,
    });
    expect(await ask(issues('acme/proj'))).toEqual({ data: { issues: [] } });

    await command('delete acme');
    expect(await ask(createIssue('acme/proj'))).toEqual({
      data: { createIssue: { id: '1', project: 'acme/proj' } },
    });

    await command('set * "maintenance"');
    const instance = await ask(createIssue('beta/app'));
    expect(instance.errors?.[0]?.extensions).toMatchObject({
      code: 'ERR_NSRO_INSTANCE_MAINTENANCE',
      namespace: '*',
    });
    expect(await ask(issues('acme/proj'))).toEqual({
      data: { issues: [{ id: '1', title: 'Hi' }] },
    });

    // Not a namespace name at all: the client's mistake, not a maintenance.
    const bad = await ask(createIssue('a b/proj'));
    expect(bad.errors?.[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT' });
  });
});
