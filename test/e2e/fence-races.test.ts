import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  FenceTimeoutError,
  type NamespaceReadOnlyMiddleware,
  namespaceReadOnly,
  RedisStateStore,
} from '../../src/index.js';
import {
  connectClient,
  type RedisServer,
  sleep,
  startRedis,
  stopAll,
  waitFor,
} from '../helpers/redis.js';

/**
 * The migration fence's races, each arranged deterministically in one process against a real
 * redis-server: a fence must never return while a write it should have waited for can still
 * commit. The end-to-end proof with four app processes and load is test/fence.test.ts.
 */

let server: RedisServer;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startRedis();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await server.cli('flushall');
});

afterAll(async () => {
  await stopAll();
});

/**
 * The app's client, with `PTTL` of the instance key held back while `hold.star` is set: the
 * instance state then needs a second round trip that outlasts a whole fence.
 */
function slowInstanceRead(client: Redis, hold: { star: number; started: number }): Redis {
  return new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'pttl') {
        return async (key: string) => {
          if (hold.star > 0 && key === 'nsro:state:*') {
            hold.started++;
            await sleep(hold.star);
          }
          return target.pttl(key);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** One guarded process: a write handler that takes `ms` and then records its commit. */
async function app(redis: Redis, client: Redis, ms = 50) {
  const store = new RedisStateStore({ redis, heartbeatTtl: 1000, timeout: 2000 });
  const guard = namespaceReadOnly({ store });
  const web = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    guard(req, res, () => {
      const ns = (req.url ?? '').split('/')[1] ?? '';
      void sleep(ms)
        .then(() => client.rpush('commits', ns))
        .then(() => {
          res.statusCode = 201;
          res.end();
        });
    });
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  await store.ready();
  await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
    what: 'registration',
  });
  cleanups.push(async () => {
    web.closeAllConnections();
    await new Promise((resolve) => web.close(resolve));
    await guard.close();
    await guard.store.close?.();
  });
  return { store, guard, port: (web.address() as AddressInfo).port };
}

function post(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The operator: `enable --wait`, then a marker pushed the moment it returned. */
async function operator() {
  const client = await connectClient(server.port);
  const store = new RedisStateStore({ redis: client, subscribe: false, timeout: 2000 });
  cleanups.push(() => store.close());
  return {
    store,
    client,
    async fence(namespace: string, timeout = 5000) {
      const result = await store.enable(namespace, { wait: true, timeout });
      await client.rpush('commits', 'MARK');
      return result;
    },
    /** Commits to `namespace` recorded after the marker: each one a lost write. */
    async late(namespace: string) {
      const commits = await client.lrange('commits', 0, -1);
      return commits.slice(commits.indexOf('MARK') + 1).filter((c) => c === namespace).length;
    },
  };
}

describe('migration fence races', () => {
  it('waits for a write whose check was still reading the instance state when the fence looked', async () => {
    const client = await connectClient(server.port);
    const hold = { star: 0, started: 0 };
    const p = await app(slowInstanceRead(client, hold), client);
    const op = await operator();
    await server.cli('set', 'nsro:state:*', 'active'); // present, so its read needs a PTTL
    expect(await post(p.port, '/acme/write')).toBe(201); // acme (open) and * now cached
    // `*` is re-read (a push announced it) and the read is slow; acme stays cached as open.
    hold.star = 400;
    await client.publish('nsro:changes', '*');
    await waitFor(() => hold.started > 0, { what: 'the slow instance read' });
    const write = post(p.port, '/acme/write'); // decided on acme=open once `*` arrives
    await sleep(20);
    await op.fence('acme');
    expect(await write).toBe(201);
    expect(await op.late('acme')).toBe(0);
  });

  it('waits for a runWrite whose check was still reading the instance state', async () => {
    const client = await connectClient(server.port);
    const hold = { star: 0, started: 0 };
    const p = await app(slowInstanceRead(client, hold), client);
    const op = await operator();
    await server.cli('set', 'nsro:state:*', 'active');
    await p.guard.runWrite('acme', () => undefined);
    hold.star = 400;
    await client.publish('nsro:changes', '*');
    await waitFor(() => hold.started > 0, { what: 'the slow instance read' });
    const job = p.guard.runWrite('acme', async () => {
      await sleep(50);
      await client.rpush('commits', 'acme');
    });
    await sleep(20);
    await op.fence('acme');
    await job;
    expect(await op.late('acme')).toBe(0);
  });

  it('does not count for ever a write whose client hung up while its check was reading', async () => {
    const client = await connectClient(server.port);
    const hold = { star: 0, started: 0 };
    const p = await app(slowInstanceRead(client, hold), client);
    const op = await operator();
    await server.cli('set', 'nsro:state:*', 'active');
    expect(await post(p.port, '/beta/write')).toBe(201);
    hold.star = 300;
    await client.publish('nsro:changes', '*');
    await waitFor(() => hold.started > 0, { what: 'the slow instance read' });
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/acme/x' });
    req.on('error', () => undefined);
    req.end();
    await sleep(50);
    req.destroy(); // the connection closes before the guard has decided
    await sleep(400); // decided (admitted: acme is open) after the response was already over
    hold.star = 0;
    await expect(op.fence('acme', 3000)).resolves.toMatchObject({ namespace: 'acme' });
  });

  it('re-reads every state when its heartbeat comes back after a lapse', async () => {
    const client = await connectClient(server.port);
    const beats = { failing: false };
    // Heartbeats fail for a while (Redis unreachable for this process, or the process paused).
    const flaky = new Proxy(client, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'set') {
          return (...args: Parameters<Redis['set']>) =>
            beats.failing ? Promise.reject(new Error('unreachable')) : target.set(...args);
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    // No push reaches it and its cache entries live a minute: it would not hear of a change.
    const store = new RedisStateStore({
      redis: flaky,
      heartbeatTtl: 300,
      ttl: 60_000,
      subscribe: false,
    });
    const guard = namespaceReadOnly({ store });
    cleanups.push(async () => {
      await guard.close();
      await store.close();
    });
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 'registration',
    });
    await guard.runWrite('acme', () => undefined); // acme cached as writable
    beats.failing = true;
    await waitFor(async () => (await client.keys('nsro:proc:*')).length === 0, {
      what: 'the registration to expire',
    });
    const op = await operator();
    await op.fence('acme'); // nobody left to wait for
    beats.failing = false;
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 're-registration',
    });
    await expect(
      guard.runWrite('acme', () => client.rpush('commits', 'acme')),
    ).rejects.toMatchObject({ code: 'ERR_NSRO_MAINTENANCE', reason: 'maintenance' });
    expect(await op.late('acme')).toBe(0);
  });

  it('counts the writes of every guard that shares a store', async () => {
    const client = await connectClient(server.port);
    const store = new RedisStateStore({ redis: client, heartbeatTtl: 1000 });
    const web = namespaceReadOnly({ store });
    const jobs: NamespaceReadOnlyMiddleware = namespaceReadOnly({ store });
    cleanups.push(() => store.close());
    await store.ready();
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 'registration',
    });
    void web; // the first guard registered the process; the job guard shares the registration
    let release = () => {};
    const job = jobs.runWrite('acme', () => new Promise<void>((resolve) => (release = resolve)));
    const op = await operator();
    const error = await op.fence('acme', 1000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FenceTimeoutError);
    expect((error as FenceTimeoutError).pending).toEqual([
      expect.objectContaining({ pid: process.pid, inflightHere: 1 }),
    ]);
    release();
    await job;
    await expect(op.store.wait('acme', { timeout: 5000 })).resolves.toMatchObject({
      namespace: 'acme',
    });
  });

  it('reports the writes a process still has in flight when the wait gives up', async () => {
    const client = await connectClient(server.port);
    const p = await app(client, client);
    const op = await operator();
    let release = () => {};
    let running = 0;
    const held = p.guard.runWrite('acme', () => {
      running++;
      return new Promise<void>((r) => (release = r));
    });
    const short = p.guard.runWrite('acme', () => {
      running++;
      return sleep(200);
    });
    await waitFor(() => running === 2, { what: 'both jobs admitted' });
    const error = await op.fence('acme', 1500).catch((e: unknown) => e);
    release();
    await Promise.all([held, short]);
    expect(error).toBeInstanceOf(FenceTimeoutError);
    expect((error as FenceTimeoutError).pending).toEqual([
      expect.objectContaining({ pid: process.pid, inflightHere: 1 }),
    ]);
    expect((error as Error).message).toMatch(/: 1 write\(s\) in flight$/);
  });

  it('does not let an acknowledgement from before the epoch counter was lost satisfy a new wait', async () => {
    const client = await connectClient(server.port);
    const p = await app(client, client);
    const op = await operator();
    await op.fence('acme'); // acknowledged
    await op.store.delete('acme');
    // Every fence key but the acknowledgements is lost (evicted under maxmemory, say): the
    // epoch counter must go with the acknowledgements or survive.
    for (const key of await client.keys('nsro:fence*'))
      if ((await client.type(key)) !== 'hash') await client.del(key);
    let release = () => {};
    const job = p.guard.runWrite('acme', () => new Promise<void>((resolve) => (release = resolve)));
    await sleep(10);
    const error = await op.fence('acme', 1000).catch((e: unknown) => e);
    release();
    await job;
    expect(error).toBeInstanceOf(FenceTimeoutError);
  });

  it('acknowledges again after Redis lost every fence key (a restart without persistence)', async () => {
    const client = await connectClient(server.port);
    await app(client, client);
    const op = await operator();
    await op.fence('acme');
    await server.cli('flushall');
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 're-registration',
    });
    await expect(op.fence('acme', 3000)).resolves.toMatchObject({ namespace: 'acme' });
  });
});
