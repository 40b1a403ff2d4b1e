import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/dist.js';
import { type RedisServer, startRedis, stopAll, waitFor } from '../helpers/redis.js';

/**
 * The default logger as a user meets it: an app process (logging/app.mjs, on the built package)
 * that sets no `logger`, a real redis-server, an operator's `redis-cli`, and the process's
 * stderr counted line by line. pino writes to fd 2 synchronously, so only another process can
 * see what it wrote.
 */

const APP = join(dirname(fileURLToPath(import.meta.url)), 'logging', 'app.mjs');

interface App {
  readonly child: ChildProcess;
  readonly base: string;
  /** Ends the process and resolves with everything it wrote to stderr. */
  stop(): Promise<string>;
}

let keyspace: RedisServer;
const running = new Set<ChildProcess>();

beforeAll(async () => {
  keyspace = await startRedis();
});

afterEach(async () => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
  await keyspace.cli('flushall');
});

afterAll(async () => {
  await stopAll();
});

async function startApp(env: Record<string, string> = {}): Promise<App> {
  const child = spawn(process.execPath, [APP], {
    cwd: ROOT,
    env: { ...process.env, ...env, REDIS_URL: keyspace.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const port = await new Promise<string>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`app did not start:\n${out}\n${err}`)), 20_000);
    child.stdout?.on('data', () => {
      const m = /ready (\d+) (\w+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        // Complete knowledge: changes typed into redis-cli are pushed, not polled.
        if (m[2] !== 'complete') fail(new Error(`store not complete: ${out}`));
        done(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`app exited during start-up (${code}):\n${out}\n${err}`));
    });
  });
  return {
    child,
    base: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      running.delete(child);
      return err;
    },
  };
}

const post = (app: App, path: string) =>
  fetch(`${app.base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"title":"x"}',
  });

/** Posts until the guard refuses (the push has landed), then `more` times; every one refused. */
async function refusedWrites(app: App, namespace: string, more: number): Promise<void> {
  const path = `/${namespace}/proj/-/issues`;
  await waitFor(async () => (await post(app, path)).status === 503, {
    what: `503 on POST ${path}`,
  });
  for (let i = 0; i < more; i++) expect((await post(app, path)).status).toBe(503);
}

const lines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);

describe('the default logger (pino at warn, on stderr)', () => {
  it('one warning for a garbage value typed with redis-cli, and nothing for a normal refusal', async () => {
    const app = await startApp();
    expect((await post(app, '/acme/proj/-/issues')).status).toBe(201);

    // A typo: the namespace is closed (fail safe), and the operator is told, once.
    await keyspace.cli('SET', 'nsro:state:acme', 'maintenence');
    await refusedWrites(app, 'acme', 5);
    // A maintenance as meant: refusals are expected, and say nothing at `warn`.
    await keyspace.cli('SET', 'nsro:state:beta', 'maintenance');
    await refusedWrites(app, 'beta', 5);
    expect((await post(app, '/gamma/proj/-/issues')).status).toBe(201);

    const logged = lines(await app.stop());
    expect(logged, JSON.stringify(logged)).toHaveLength(1);
    expect(logged[0]).toMatchObject({
      level: 40,
      name: 'namespace-read-only',
      namespace: 'acme',
      value: 'maintenence',
      msg: 'namespace-read-only: unrecognised state value; treated as maintenance',
    });
  });

  it('one warning too for a garbage value already in Redis when the process starts', async () => {
    await keyspace.cli('SET', 'nsro:state:acme', 'maintenence');
    const app = await startApp();
    await refusedWrites(app, 'acme', 5);

    const logged = lines(await app.stop());
    expect(logged, JSON.stringify(logged)).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, namespace: 'acme', value: 'maintenence' });
  });

  it('warns once at start of a misconfiguration: routes with numeric ids and no resolveId', async () => {
    const app = await startApp({ NO_RESOLVE_ID: '1' });
    await keyspace.cli('SET', 'nsro:state:beta', 'maintenance');
    await refusedWrites(app, 'beta', 2);
    // A write by numeric id cannot be told apart while something is closed: refused, at `info`.
    expect((await post(app, '/api/v4/projects/42/issues')).status).toBe(503);

    const logged = lines(await app.stop());
    expect(logged, JSON.stringify(logged)).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, setup: true, option: 'resolveId' });
  });

  it('logger: false says nothing at all, typo included', async () => {
    const app = await startApp({ LOGGER: 'false', NO_RESOLVE_ID: '1' });
    await keyspace.cli('SET', 'nsro:state:acme', 'maintenence');
    await refusedWrites(app, 'acme', 3);
    await keyspace.cli('SET', 'nsro:state:beta', 'maintenance');
    await refusedWrites(app, 'beta', 3);
    expect(await app.stop()).toBe('');
  });
});
