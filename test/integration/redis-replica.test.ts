import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStateStore } from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';
import {
  commandCalls,
  connectClient,
  type RedisServer,
  sleep,
  startRedis,
  stopAll,
  waitFor,
} from '../helpers/redis.js';

/**
 * The Redis store's complete copy, against a real redis-server started as Debian ships it
 * (keyspace notifications off): what an app that mounts the guard sees on its first day, during
 * a Redis outage, and when the push path goes silent.
 */

const express5 = expressVersions[0].express;

/** Real and odd writes; none of them may be refused while nothing is in maintenance. */
const CORPUS: readonly (readonly [method: 'post' | 'put' | 'delete', path: string])[] = [
  ['post', '/api/v4/projects/123/issues'],
  ['put', '/api/v4/groups/42'],
  ['delete', '/api/v4/namespaces/7'],
  ['post', '/caf%C3%A9/x'],
  ['post', '/other/proj/-/wikis/a%2F..%2Fb'],
  ['post', '/acme%ZZ/x'],
  ['post', '/%2e%2e/x'],
  ['post', '/beta/proj/-/issues'],
];

let server: RedisServer;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  await stopAll();
});

async function fresh(): Promise<void> {
  await server.cli('flushall');
}

function storeOn(
  client: Redis,
  options: Partial<ConstructorParameters<typeof RedisStateStore>[0]> = {},
) {
  return new RedisStateStore({ redis: client, ...options });
}

describe('with nothing in maintenance, on a stock redis-server', () => {
  it('the guard refuses none of a corpus of real and odd writes; with acme closed it refuses the unknowable ones', async () => {
    await fresh();
    await server.cli('config', 'set', 'notify-keyspace-events', '');
    const client = await connectClient(server.port);
    const store = storeOn(client);
    const { app, handled } = guardedApp(express5, { store });
    expect((await store.ready()).mode).toBe('complete');
    // The quick start's default turned notifications on, so a plain redis-cli SET is pushed.
    expect(await server.cli('config', 'get', 'notify-keyspace-events')).toMatch(/K/);

    for (const [method, path] of CORPUS) {
      const res = await request(app)[method](path);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
    }
    expect(handled).toHaveLength(CORPUS.length);

    await server.cli('set', 'nsro:state:acme', 'maintenance');
    await waitFor(() => store.peek('acme') !== null, { what: 'acme pushed' });
    for (const [method, path] of CORPUS) {
      const res = await request(app)[method](path);
      const expected = path.startsWith('/beta/') ? 200 : 503;
      expect({ path, status: res.status }).toEqual({ path, status: expected });
    }
    await store.close();
  });

  it('writes to 1,000 never-seen namespaces cost no Redis command at all', async () => {
    await fresh();
    await server.cli('set', 'nsro:state:acme', 'maintenance');
    const client = await connectClient(server.port);
    const store = storeOn(client);
    const { app, handled } = guardedApp(express5, { store });
    await store.ready();
    const before = await commandCalls(server);
    for (let i = 0; i < 1000; i++) {
      const res = await request(app).post(`/ns${i}/proj/-/issues`);
      expect(res.status).toBe(200);
    }
    const after = await commandCalls(server);
    for (const command of ['get', 'mget', 'eval', 'evalsha', 'pttl', 'exists']) {
      expect({ command, calls: (after[command] ?? 0) - (before[command] ?? 0) }).toEqual({
        command,
        calls: 0,
      });
    }
    expect(handled).toHaveLength(1000);
    expect((await request(app).post('/acme/proj/-/issues')).status).toBe(503);
    await store.close();
  });

  it('finds, at start, a state an operator set while no process listened (not in the index)', async () => {
    await fresh();
    await server.cli('set', 'nsro:state:early', 'maintenance');
    expect(await server.cli('smembers', 'nsro:index')).toBe('');
    const client = await connectClient(server.port);
    const store = storeOn(client);
    expect(await store.ready()).toMatchObject({ mode: 'complete', states: 1 });
    expect(store.peek('early')).toMatchObject({ state: 'maintenance' });
    // ...and indexed it, so the next process loads it without a SCAN.
    expect(await server.cli('smembers', 'nsro:index')).toBe('early');
    await store.close();
  });
});

describe('start-up', () => {
  it('a request that arrives before the first sync waits for it instead of being refused', async () => {
    await fresh();
    await server.cli('set', 'nsro:state:acme', 'maintenance');
    // Not connected yet, and without an offline queue: commands sent now would fail at once.
    const client = new Redis({
      host: '127.0.0.1',
      port: server.port,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
    });
    client.on('error', () => undefined);
    const store = storeOn(client);
    const { app } = guardedApp(express5, { store });
    const early = await Promise.all([
      request(app).post('/beta/proj/-/issues'),
      request(app).post('/api/v4/projects/9/issues'),
      request(app).post('/acme/proj/-/issues'),
    ]);
    expect(early.map((r) => r.status)).toEqual([200, 503, 503]);
    expect(store.status().mode).toBe('complete');
    await store.close();
    client.disconnect();
  });
});

describe('Redis killed for 10 s after a sync', () => {
  it('acme stays refused, a cached and a never-seen namespace keep passing, the checks agree, and it recovers', async () => {
    await fresh();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    await server.cli('set', 'nsro:state:acme', 'maintenance');
    const client = await connectClient(server.port);
    const store = storeOn(client, { canaryInterval: 200 });
    const { app, guard, handled } = guardedApp(express5, { store });
    await store.ready();
    expect((await request(app).post('/cached/proj/-/issues')).status).toBe(200);

    await server.kill();
    await waitFor(() => store.status().mode === 'degraded', { what: 'outage noticed' });
    const outageEnds = Date.now() + 10_000;
    let rounds = 0;
    while (Date.now() < outageEnds) {
      const [acme, cached, cold] = await Promise.all([
        request(app).post('/acme/proj/-/issues'),
        request(app).post('/cached/proj/-/issues'),
        request(app).post(`/cold${rounds}/proj/-/issues`),
      ]);
      expect([acme.status, cached.status, cold.status]).toEqual([503, 200, 200]);
      expect(await guard.isReadOnly('acme')).toBe(true);
      expect(await guard.isReadOnly(`cold${rounds}`)).toBe(false);
      rounds++;
      await sleep(250);
    }
    expect(handled.some((h) => h.url.startsWith('/acme'))).toBe(false);

    await server.restart(); // empty: its data was not kept
    await waitFor(() => store.status().mode === 'complete', {
      timeout: 10_000,
      what: 'complete again',
    });
    expect((await request(app).post('/acme/proj/-/issues')).status).toBe(200);
    await server.cli('set', 'nsro:state:beta', 'maintenance');
    await waitFor(() => store.peek('beta') !== null, { what: 'beta pushed after recovery' });
    expect((await request(app).post('/beta/proj/-/issues')).status).toBe(503);
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
    await store.close();
  }, 40_000);

  it('past staleIfError, onStoreError decides again', async () => {
    await fresh();
    const client = await connectClient(server.port);
    const store = storeOn(client, { canaryInterval: 100, staleIfError: 300 });
    const { app } = guardedApp(express5, { store });
    await store.ready();
    await server.kill();
    await waitFor(() => store.status().mode === 'degraded', { what: 'outage noticed' });
    await waitFor(async () => (await request(app).post('/cold/proj/-/issues')).status === 503, {
      what: 'refused once the last complete knowledge is too old',
    });
    await server.restart();
    await waitFor(() => store.status().mode === 'complete', { timeout: 10_000 });
    await store.close();
  }, 30_000);
});

describe('a silent push path', () => {
  it('is detected by the canary, and changes are then obeyed by polling per key', async () => {
    await fresh();
    await server.cli('config', 'set', 'notify-keyspace-events', 'K$gx');
    const client = await connectClient(server.port);
    const { logger, warned } = recordingLogger();
    // 'auto' would not turn notifications back on, so the silence lasts.
    const store = storeOn(client, {
      keyspaceEvents: 'auto',
      canaryInterval: 200,
      ttl: 300,
      logger,
    });
    const { app } = guardedApp(express5, { store });
    expect((await store.ready()).mode).toBe('complete');

    // Connected, subscribed, and hearing nothing: what someone turning notifications off, or a
    // failover to a server without them, looks like.
    await server.cli('config', 'set', 'notify-keyspace-events', '');
    const silentAt = Date.now();
    await waitFor(() => store.status().mode === 'degraded', { what: 'silence detected' });
    const detectedAfter = Date.now() - silentAt;
    // Silent first; then, re-checked, the server says notifications are off.
    expect(['push-silent', 'notifications-off']).toContain(store.status().cause);
    expect(store.status().subscribed).toBe(true);
    expect(warned()[0]?.object.cause).toBe('push-silent');

    await server.cli('set', 'nsro:state:acme', 'maintenance');
    await waitFor(async () => (await request(app).post('/acme/proj/-/issues')).status === 503, {
      what: 'acme obeyed by polling',
    });

    await server.cli('config', 'set', 'notify-keyspace-events', 'K$gx');
    await waitFor(() => store.status().mode === 'complete', { what: 'push proven again' });
    expect(store.peek('acme')).toMatchObject({ state: 'maintenance' });
    // Informational: the bound is 2 × canaryInterval (400 ms here) plus scheduling.
    console.info(`silent push path detected after ${detectedAfter} ms`);
    await store.close();
  });

  it("with keyspaceEvents: 'enable', turns notifications back on and is complete again", async () => {
    await fresh();
    const client = await connectClient(server.port);
    const { logger, warned, of } = recordingLogger();
    const store = storeOn(client, { canaryInterval: 200, logger });
    await store.ready();
    await server.cli('config', 'set', 'notify-keyspace-events', '');
    // Degraded for as long as one canary round trip: too short to poll for, so read the log.
    await waitFor(() => warned().some((w) => w.object.cause === 'push-silent'), {
      what: 'silence detected',
    });
    await waitFor(() => of('info').some((i) => /proven again/.test(i.message ?? '')), {
      what: 'proven again',
    });
    expect(store.status().mode).toBe('complete');
    expect(await server.cli('config', 'get', 'notify-keyspace-events')).toMatch(/K/);
    await store.close();
  });
});

describe('the index', () => {
  it('store.set and store.delete keep it; an expired or redis-cli-deleted key leaves it', async () => {
    await fresh();
    const client = await connectClient(server.port);
    const store = storeOn(client);
    await store.ready();
    await store.set('a', 'maintenance');
    await store.set('b', 'maintenance', { ttl: 50 });
    expect((await server.cli('smembers', 'nsro:index')).split('\n').sort()).toEqual(['a', 'b']);
    await store.delete('a');
    await waitFor(async () => (await server.cli('smembers', 'nsro:index')) === '', {
      what: 'expired b dropped from the index',
    });
    expect(store.anyClosed()).toBe(false);
    await server.cli('set', 'nsro:state:c', 'maintenance');
    await waitFor(async () => (await server.cli('smembers', 'nsro:index')) === 'c', {
      what: 'c indexed from its notification',
    });
    await server.cli('del', 'nsro:state:c');
    await waitFor(async () => (await server.cli('smembers', 'nsro:index')) === '', {
      what: 'c dropped',
    });
    await store.close();
  });
});
