import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MemoryStateStore, namespaceReadOnly, RedisStateStore } from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';
import {
  commandCalls,
  connectClient,
  type RedisServer,
  startRedis,
  stopAll,
  waitFor,
} from '../helpers/redis.js';

/**
 * RedisStateStore against a real redis-server, driven the way operators drive it: with the real
 * `redis-cli`. Most suites run with keyspace notifications on (`K$gx`); the TTL-only suite runs
 * on a second server that has them off.
 */

const express5 = expressVersions[0].express;
const WRITE = (ns: string) => `/${ns}/proj/-/issues`;

let keyspace: RedisServer;
let plain: RedisServer;

beforeAll(async () => {
  [keyspace, plain] = await Promise.all([
    startRedis(['--notify-keyspace-events', 'K$gx']),
    startRedis(),
  ]);
});

afterAll(async () => {
  await stopAll();
});

/** Deletes every state key on `server` (DEL emits keyspace events, so caches hear of it). */
async function clearStates(server: RedisServer): Promise<void> {
  const keys = (await server.cli('--scan', '--pattern', 'nsro:state:*'))
    .split('\n')
    .filter((k) => k.length > 0);
  if (keys.length > 0) await server.cli('del', ...keys);
}

/** A store on its own client, as one process of a fleet would have. */
async function processOn(
  server: RedisServer,
  options: Partial<ConstructorParameters<typeof RedisStateStore>[0]> = {},
) {
  const client = await connectClient(server.port);
  const store = new RedisStateStore({ redis: client, ...options });
  return { client, store };
}

describe.each(expressVersions)('operator flow with redis-cli ($name)', ({ express }) => {
  let client: Redis;
  let store: RedisStateStore;
  let app: ReturnType<typeof guardedApp>;
  let server: Server;
  const log = recordingLogger();

  beforeAll(async () => {
    ({ client, store } = await processOn(keyspace, { logger: log.logger }));
    app = guardedApp(express, { store, logger: log.logger });
    server = app.app.listen(0, '127.0.0.1');
    expect(await store.ready()).toMatchObject({ subscribed: true, mode: 'complete' });
  });

  afterEach(async () => {
    await clearStates(keyspace);
  });

  afterAll(async () => {
    await app.guard.close();
    await app.guard.store.close?.();
    await new Promise((resolve) => server.close(resolve));
    client.disconnect();
  });

  const post = (path: string) => request(server).post(path).set('Accept', 'application/json');
  const blocked = (path: string) =>
    waitFor(async () => (await post(path)).status === 503, { what: `503 on POST ${path}` });
  const writable = (path: string, timeout = 5000) =>
    waitFor(async () => (await post(path)).status === 200, {
      timeout,
      what: `200 on POST ${path}`,
    });

  it('SET maintenance blocks writes to the namespace, DEL opens them again', async () => {
    expect((await post(WRITE('acme'))).status).toBe(200);

    expect(await keyspace.cli('set', 'nsro:state:acme', 'maintenance')).toBe('OK');
    await blocked(WRITE('acme'));

    const handledBefore = app.handled.length;
    const res = await post(WRITE('acme')).send({ title: 'x' });
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('acme');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['retry-after']).toBe('900');
    expect(res.body).toMatchObject({ namespace: 'acme' });
    // Case-insensitive, and the API form names the same root namespace.
    expect((await post('/ACME/proj/-/issues')).headers['x-namespace-read-only']).toBe('acme');
    expect((await post('/api/v4/projects/acme%2Fproj/issues')).status).toBe(503);
    expect(app.handled.length).toBe(handledBefore);

    // Reads and other namespaces are untouched.
    expect((await request(server).get('/acme/proj')).status).toBe(200);
    expect((await post(WRITE('other'))).status).toBe(200);

    expect(await keyspace.cli('del', 'nsro:state:acme')).toBe('1');
    await writable(WRITE('acme'));
  });

  it('SET ... EX 2 blocks with Retry-After <= 2 and ends by itself', async () => {
    await keyspace.cli('set', 'nsro:state:acme', 'maintenance', 'EX', '2');
    await blocked(WRITE('acme'));
    const res = await post(WRITE('acme'));
    expect(res.status).toBe(503);
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(2);

    // 20 s: 10x the key's 2 s life, so a loaded machine cannot make it look stuck.
    await writable(WRITE('acme'), 20_000);
    // Not before the key expired: by the time writes pass, it is gone.
    expect(await keyspace.cli('exists', 'nsro:state:acme')).toBe('0');
  }, 30_000);

  it('a typo closes the namespace and logs one warning, however many writes it refuses', async () => {
    await keyspace.cli('set', 'nsro:state:acme', 'maintenence');
    await blocked(WRITE('acme'));
    const res = await post(WRITE('acme'));
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('acme');
    expect((await post(WRITE('acme'))).status).toBe(503);
    // The store's, when it learnt the value; the refusals themselves are `info`.
    const warnings = log.entries.filter(
      (e) =>
        e.level === 'warn' && e.object.value === 'maintenence' && e.object.namespace === 'acme',
    );
    expect(warnings, JSON.stringify(log.entries)).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/unrecognised state value/);
    expect(
      log.entries.filter((e) => e.level === 'info' && e.object.reason === 'unrecognized-state')
        .length,
    ).toBeGreaterThanOrEqual(2);
  });

  it('a JSON value gives its message and until, and Retry-After from until', async () => {
    const until = new Date(Date.now() + 600_000);
    await keyspace.cli(
      'set',
      'nsro:state:acme',
      JSON.stringify({
        state: 'maintenance',
        message: 'Migrating',
        until: until.toISOString(),
        reason: 'region-move',
      }),
    );
    await blocked(WRITE('acme'));
    const res = await post(WRITE('acme'));
    expect(res.status).toBe(503);
    // The JSON answer carries the state's reason and the refusal's stable code.
    expect(res.body).toEqual({
      message: 'Migrating',
      namespace: 'acme',
      code: 'ERR_NSRO_MAINTENANCE',
      reason: 'region-move',
      until: until.toISOString(),
    });
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(590);
    expect(retryAfter).toBeLessThanOrEqual(600);
  });

  it("the instance key 'nsro:state:*' blocks every write except the allowlist", async () => {
    await keyspace.cli('set', 'nsro:state:*', 'maintenance');
    await blocked(WRITE('other'));
    for (const path of [WRITE('acme'), WRITE('zeta'), '/api/v4/projects/42/issues', '/']) {
      const res = await post(path);
      expect(res.status, path).toBe(503);
    }
    expect((await post(WRITE('acme'))).headers['x-namespace-read-only']).toBe('*');
    expect((await post('/users/sign_in')).status).toBe(200);
    expect((await post('/acme/proj.git/git-upload-pack')).status).toBe(200);
    expect((await request(server).get('/acme/proj')).status).toBe(200);

    await keyspace.cli('del', 'nsro:state:*');
    await writable(WRITE('acme'));
  });
});

describe('store API on Redis', () => {
  let client: Redis;
  let store: RedisStateStore;

  beforeAll(async () => {
    ({ client, store } = await processOn(keyspace));
    await store.ready();
  });

  afterAll(async () => {
    await clearStates(keyspace);
    await store.close();
    client.disconnect();
  });

  it('set/get/delete/list use the operator key format', async () => {
    const until = new Date(Date.now() + 3_600_000);
    await store.set('Listed/Team', 'maintenance', { ttl: 5000 });
    await store.set('other', { state: 'maintenance', message: 'Moving', until });

    expect(await keyspace.cli('get', 'nsro:state:listed')).toBe('maintenance');
    const pttl = Number(await keyspace.cli('pttl', 'nsro:state:listed'));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(5000);
    expect(JSON.parse(await keyspace.cli('get', 'nsro:state:other'))).toMatchObject({
      state: 'maintenance',
      message: 'Moving',
      until: until.toISOString(),
    });

    const listed = await store.get('listed');
    expect(listed?.state).toBe('maintenance');
    expect(listed?.expiresAt).toBeInstanceOf(Date);
    expect((await store.get('other'))?.until?.toISOString()).toBe(until.toISOString());

    const all = await store.list();
    expect(all.map((e) => e.namespace)).toEqual(['listed', 'other']);
    expect(all[1]?.state).toMatchObject({ state: 'maintenance', message: 'Moving' });

    await store.delete('listed');
    expect(await store.get('listed')).toBeNull();
    expect(await keyspace.cli('exists', 'nsro:state:listed')).toBe('0');
    expect((await store.list()).map((e) => e.namespace)).toEqual(['other']);

    await expect(store.set('acme', 'maintenance', { ttl: 0 })).rejects.toThrow(TypeError);
  });

  it('list() gives what MemoryStateStore.list() gives for the same states', async () => {
    await clearStates(keyspace);
    const memory = new MemoryStateStore({ logger: false });
    const until = new Date('2030-01-01T00:00:00Z');
    for (const s of [memory, store]) {
      await s.set('zeta', 'active');
      await s.set('Acme/Team', { state: 'maintenance', message: 'Moving', until, reason: 'move' });
      await s.set('*', 'frozen');
    }
    const listed = await store.list();
    expect(listed.map((e) => e.namespace)).toEqual(['*', 'acme', 'zeta']);
    expect(listed).toEqual(await memory.list());
    await clearStates(keyspace);
  });
});

describe('invalidation', () => {
  it('with keyspace notifications a redis-cli SET reaches two processes before the TTL could', async () => {
    // An hour: during the test, only the push can tell the processes.
    const ttl = 3_600_000;
    const a = await processOn(keyspace, { ttl });
    const b = await processOn(keyspace, { ttl });
    const appA = guardedApp(express5, { store: a.store });
    const appB = guardedApp(express5, { store: b.store });
    const serverA = appA.app.listen(0, '127.0.0.1');
    const serverB = appB.app.listen(0, '127.0.0.1');
    try {
      for (const s of [a.store, b.store]) {
        expect(await s.ready()).toMatchObject({ subscribed: true, mode: 'complete' });
      }
      // Warm both caches: the namespace is cached as writable in each process.
      expect((await request(serverA).post(WRITE('pushed'))).status).toBe(200);
      expect((await request(serverB).post(WRITE('pushed'))).status).toBe(200);
      expect(a.store.peek('pushed')).toBeNull();
      expect(b.store.peek('pushed')).toBeNull();

      await keyspace.cli('set', 'nsro:state:pushed', 'maintenance');
      const replied = Date.now();
      await waitFor(
        async () => {
          const [ra, rb] = await Promise.all([
            request(serverA).post(WRITE('pushed')),
            request(serverB).post(WRITE('pushed')),
          ]);
          return ra.status === 503 && rb.status === 503;
        },
        { timeout: 10_000, interval: 5, what: 'both processes blocking' },
      );
      console.log(`staleness push: ${Date.now() - replied} ms (reported, not asserted)`);
    } finally {
      await clearStates(keyspace);
      await Promise.all([appA.guard.close(), appB.guard.close()]);
      await Promise.all([appA.guard.store.close?.(), appB.guard.store.close?.()]);
      await Promise.all([serverA, serverB].map((s) => new Promise((r) => s.close(r))));
      a.client.disconnect();
      b.client.disconnect();
    }
  });

  describe('without keyspace notifications', () => {
    afterEach(async () => {
      await clearStates(plain);
    });

    it('a redis-cli SET is obeyed once the TTL has passed, and only through the TTL', async () => {
      // Two processes that differ only in their TTL. The one with an hour's TTL is warmed first:
      // had the TTL no effect, its entry would expire first.
      // 'auto': use notifications only if the server has them on; it has not, so per key.
      const long = await processOn(plain, { ttl: 3_600_000, keyspaceEvents: 'auto' });
      const short = await processOn(plain, { ttl: 300, keyspaceEvents: 'auto' });
      const apps = [
        guardedApp(express5, { store: long.store }),
        guardedApp(express5, { store: short.store }),
      ];
      const servers: Server[] = apps.map(({ app }) => app.listen(0, '127.0.0.1'));
      const [longServer, shortServer] = servers as [Server, Server];
      const post = (server: Server) => request(server).post(WRITE('polled'));
      try {
        for (const { store } of [long, short]) {
          expect(await store.ready()).toMatchObject({
            subscribed: true,
            mode: 'degraded',
            cause: 'notifications-off',
          });
        }
        expect((await post(longServer)).status).toBe(200);
        expect((await post(shortServer)).status).toBe(200);
        await plain.cli('set', 'nsro:state:polled', 'maintenance');
        const replied = Date.now();
        // 10 s: over 10x the 300 ms TTL.
        await waitFor(async () => (await post(shortServer)).status === 503, {
          timeout: 10_000,
          interval: 5,
          what: 'the TTL to expire the cached value',
        });
        console.log(`staleness ttl-only: ${Date.now() - replied} ms (ttl 300 ms; not asserted)`);
        // Nothing else told it: the process with the long TTL still admits.
        expect((await post(longServer)).status).toBe(200);
      } finally {
        for (const { guard } of apps) {
          await guard.close();
          await guard.store.close?.();
        }
        await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
        long.client.disconnect();
        short.client.disconnect();
      }
    });

    it('a change made with store.set on another process is pushed on the channel', async () => {
      // An hour: during the test, only the announcement can tell the reader.
      const ttl = 3_600_000;
      const writer = await processOn(plain, { ttl, keyspaceEvents: 'auto' });
      const reader = await processOn(plain, { ttl, keyspaceEvents: 'auto' });
      const { app, guard } = guardedApp(express5, { store: reader.store });
      const server = app.listen(0, '127.0.0.1');
      try {
        expect(await reader.store.ready()).toMatchObject({
          subscribed: true,
          mode: 'degraded',
        });
        expect((await request(server).post(WRITE('announced'))).status).toBe(200);
        expect(reader.store.peek('announced')).toBeNull();

        await writer.store.set('announced', { state: 'maintenance', message: 'Announced' });
        const written = Date.now();
        await waitFor(async () => (await request(server).post(WRITE('announced'))).status === 503, {
          timeout: 10_000,
          interval: 5,
          what: 'the announcement',
        });
        console.log(
          `staleness announce (no keyspace events): ${Date.now() - written} ms (not asserted)`,
        );
        const res = await request(server)
          .post(WRITE('announced'))
          .set('Accept', 'application/json');
        expect(res.body.message).toBe('Announced');

        await writer.store.delete('announced');
        await waitFor(async () => (await request(server).post(WRITE('announced'))).status === 200, {
          timeout: 10_000,
          interval: 5,
          what: 'the delete announcement',
        });
      } finally {
        await guard.close();
        await guard.store.close?.();
        await writer.store.close();
        await new Promise((r) => server.close(r));
        writer.client.disconnect();
        reader.client.disconnect();
      }
    });

    it("keyspaceEvents: 'enable' turns notifications on and then redis-cli changes are pushed", async () => {
      // An hour's TTL: only the notification can refresh the entry during the test.
      const { client, store } = await processOn(plain, {
        ttl: 3_600_000,
        keyspaceEvents: 'enable',
      });
      try {
        expect(await store.ready()).toMatchObject({ mode: 'complete' });
        const flags = (await plain.cli('config', 'get', 'notify-keyspace-events')).split('\n')[1];
        for (const f of 'K$gx') expect(flags).toContain(f);
        expect(await store.get('enabled')).toBeNull();
        await plain.cli('set', 'nsro:state:enabled', 'maintenance');
        await waitFor(() => store.peek('enabled')?.state === 'maintenance', {
          timeout: 10_000,
          interval: 2,
          what: 'the keyspace notification',
        });
      } finally {
        await plain.cli('config', 'set', 'notify-keyspace-events', '');
        await store.close();
        client.disconnect();
      }
    });
  });
});

/** A request the guard can decide without a socket: what a router hands to a middleware. */
function fakeRequest(path: string): IncomingMessage {
  return {
    method: 'POST',
    url: path,
    originalUrl: path,
    headers: {},
  } as unknown as IncomingMessage;
}

function fakeResponse(onEnd: () => void): ServerResponse {
  const headers: Record<string, unknown> = {};
  return {
    statusCode: 200,
    headersSent: false,
    writableEnded: false,
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = value;
    },
    getHeader: (name: string) => headers[name.toLowerCase()],
    end: () => onEnd(),
  } as unknown as ServerResponse;
}

/** A change announced the way a store's `set` announces it: the degraded mode's push. */
async function announce(server: RedisServer, namespace: string): Promise<void> {
  await server.cli('publish', 'nsro:changes', namespace);
}

describe('single-flight and tiers, in the degraded mode (per key)', () => {
  let client: Redis;
  let store: RedisStateStore;

  beforeAll(async () => {
    ({ client, store } = await processOn(keyspace, { keyspaceEvents: 'off' }));
    expect(await store.ready()).toMatchObject({ mode: 'degraded', subscribed: true });
  });

  afterAll(async () => {
    await clearStates(keyspace);
    await store.close();
    client.disconnect();
  });

  it('1000 concurrent writes to a cold namespace cost one MGET; warm, they cost nothing', async () => {
    const guard = namespaceReadOnly({ store });
    const BURST = 1000;
    let passed = 0;
    let blocked = 0;
    const burst = () => {
      for (let i = 0; i < BURST; i++) {
        guard(
          fakeRequest(WRITE('burst')),
          fakeResponse(() => blocked++),
          () => passed++,
        );
      }
    };

    await keyspace.cli('config', 'resetstat');
    burst();
    await waitFor(() => passed + blocked === BURST, { timeout: 10_000, interval: 2 });
    const cold = await commandCalls(keyspace);
    expect(passed).toBe(BURST);
    console.log(
      `single-flight cold burst of ${BURST}: mget=${cold.mget ?? 0} get=${cold.get ?? 0} pttl=${cold.pttl ?? 0} (all: ${JSON.stringify(cold)})`,
    );
    expect(cold.mget).toBe(1);
    expect(cold.get).toBeUndefined();
    expect(cold.pttl).toBeUndefined(); // an open namespace costs exactly one command

    // Warm: every decision is made synchronously from memory.
    passed = 0;
    burst();
    expect(passed).toBe(BURST);
    const warm = await commandCalls(keyspace);
    const changed = Object.keys({ ...cold, ...warm }).filter((c) => cold[c] !== warm[c]);
    console.log(
      `single-flight warm burst of ${BURST}: commands changed: ${JSON.stringify(changed)} (info ${cold.info} -> ${warm.info})`,
    );
    expect(changed).toEqual(['info']);
    expect(warm.info).toBe((cold.info ?? 0) + 1);
  });

  it('peek is undefined before the first read and defined after; a push refreshes it', async () => {
    expect(store.peek('tiers')).toBeUndefined();
    expect(await store.get('tiers')).toBeNull();
    expect(store.peek('tiers')).toBeNull();
    expect(store.status().cached).toBeGreaterThanOrEqual(1);

    await keyspace.cli('set', 'nsro:state:tiers', 'maintenance');
    await announce(keyspace, 'tiers');
    await waitFor(() => store.peek('tiers')?.state === 'maintenance', {
      timeout: 10_000,
      interval: 2,
      what: 'the pushed refresh',
    });
  });

  it('one lookup per key per request: the memo holds for the whole request', async () => {
    const guard = namespaceReadOnly({ store });
    const get = vi.spyOn(store, 'get');
    const peek = vi.spyOn(store, 'peek');
    try {
      const req = fakeRequest(WRITE('memo'));
      expect(await guard.isReadOnly('memo', req)).toBe(false);
      // Each key asked once: from memory when cached ('*' is warm from the burst above),
      // from Redis otherwise ('memo' is cold).
      expect(peek.mock.calls.map((c) => c[0]).sort()).toEqual(['*', 'memo']);
      expect(get.mock.calls.map((c) => c[0])).toEqual(['memo']);
      const lookups = get.mock.calls.length + peek.mock.calls.length;

      // The same request asks again, through every entry point: no new lookup.
      expect(await guard.isReadOnly('memo', req)).toBe(false);
      await guard.assertWritable('memo', req);
      let passed = false;
      guard(
        req,
        fakeResponse(() => undefined),
        () => {
          passed = true;
        },
      );
      await waitFor(() => passed, { timeout: 10_000 });
      expect(get.mock.calls.length + peek.mock.calls.length).toBe(lookups);

      // Even after the state changed, the request keeps the answer it started with...
      await keyspace.cli('set', 'nsro:state:memo', 'maintenance');
      await announce(keyspace, 'memo');
      await waitFor(() => store.peek('memo')?.state === 'maintenance', { timeout: 10_000 });
      expect(await guard.isReadOnly('memo', req)).toBe(false);
      // ...while a new request sees the change.
      expect(await guard.isReadOnly('memo', fakeRequest(WRITE('memo')))).toBe(true);
    } finally {
      get.mockRestore();
      peek.mockRestore();
    }
  });
});

describe('lifecycle', () => {
  /**
   * This store's connections as Redis sees them, told apart from every other test's by the
   * client name (the subscriber is a duplicate of the user's client, so it carries it too).
   */
  async function connectionsNamed(name: string) {
    const lines = (await keyspace.cli('client', 'list'))
      .split('\n')
      .filter((line) => line.includes(` name=${name} `));
    return {
      all: lines.length,
      subscribers: lines.filter((line) => /\b(sub|psub)=[1-9]/.test(line)).length,
    };
  }

  it('guard.close() leaves a shared store to the other guards; store.close() drops its subscriber and heartbeat, not the client', async () => {
    const name = `life-${process.pid}-${Date.now()}`;
    const client = await connectClient(keyspace.port, { connectionName: name });
    const store = new RedisStateStore({ redis: client });
    const first = namespaceReadOnly({ store, fence: true });
    const second = namespaceReadOnly({ store, fence: true });
    expect(await store.ready()).toMatchObject({ subscribed: true });
    expect(await connectionsNamed(name)).toEqual({ all: 2, subscribers: 1 });
    const processes = () => client.keys('nsro:proc:*');
    await waitFor(async () => (await processes()).length === 1, { what: 'the heartbeat' });

    await first.close();
    // The second guard still reads the store, through its subscriber, and its process still
    // takes part in the fence.
    await store.set('life', 'maintenance');
    expect(await second.isReadOnly('life')).toBe(true);
    expect(store.status()).toMatchObject({ subscribed: true });
    expect(await processes()).toHaveLength(1);

    // The last guard gone: no heartbeat any more, so no operator's wait counts this process.
    await second.close();
    expect(await processes()).toEqual([]);

    await store.close();
    expect(store.status()).toMatchObject({ subscribed: false, cached: 0 });
    expect(await client.ping()).toBe('PONG');
    await waitFor(async () => (await connectionsNamed(name)).all === 1, {
      what: 'the subscriber connection to close',
    });
    expect(await connectionsNamed(name)).toEqual({ all: 1, subscribers: 0 });

    // Still usable without push (TTL only), and closing twice is harmless.
    expect(await store.get('life')).toMatchObject({ state: 'maintenance' });
    await store.close();
    await store.delete('life');
    await client.quit();
  });
});

describe('the migration fence is opt-in', () => {
  it('a guard without fence: true registers nothing (no proc key, no heartbeat); with fence: true one appears', async () => {
    const prefix = `optin-${process.pid}:`;
    const client = await connectClient(keyspace.port);
    const store = new RedisStateStore({ redis: client, prefix, heartbeatTtl: 200 });
    // Every command on a process key (the heartbeat writing its `<prefix>proc:<id>`, its DEL)
    // and on any registry key beside it shows up on this channel.
    const events: string[] = [];
    const watcher = await connectClient(keyspace.port);
    watcher.on('pmessage', (_pattern: string, channel: string, event: string) => {
      events.push(`${channel} ${event}`);
    });
    await watcher.psubscribe(`__keyspace@0__:${prefix}proc*`);
    const processKeys = async () =>
      (await keyspace.cli('keys', `${prefix}proc*`)).split('\n').filter((k) => k.length > 0);
    const ownKeys = async () => (await processKeys()).filter((k) => k.startsWith(`${prefix}proc:`));

    try {
      const { app, guard, handled } = guardedApp(express5, { store });
      await store.set('other', 'maintenance');
      expect((await request(app).post(WRITE('acme'))).status).toBe(200);
      expect((await request(app).post(WRITE('other'))).status).toBe(503);
      expect(handled).toHaveLength(1);
      // Several heartbeat periods (heartbeatTtl / 4 = 50 ms) later, still nothing.
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(await processKeys()).toEqual([]);
      expect(events).toEqual([]);
      expect(await guard.runWrite('acme', () => 'ran')).toBe('ran');
      await guard.close();

      const fenced = namespaceReadOnly({ store, fence: true });
      await waitFor(async () => (await ownKeys()).length > 0, {
        what: 'the fenced guard to register',
      });
      expect(await ownKeys()).toHaveLength(1);
      const beat = new RegExp(`^__keyspace@0__:${prefix}proc:\\S+ set$`);
      await waitFor(() => events.some((e) => beat.test(e)), {
        what: 'a heartbeat on the process key',
      });
      await fenced.close();
      expect(await processKeys()).toEqual([]);
    } finally {
      await store.delete('other');
      await store.close();
      watcher.disconnect();
      client.disconnect();
    }
  });
});
