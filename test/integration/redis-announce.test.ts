import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { namespaceReadOnly, RedisStateStore } from '../../src/index.js';
import { KEEP_IDS_MS } from '../../src/stores/redis/announce.js';
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
 * Announcements (`nsro ps`), against a real redis-server: every store that guards announces
 * itself under `<prefix>ps:<id>`, fence or not, renews it on its tick and deletes it on close; a
 * store with `announce: false` (the CLI's) never does. Each test uses its own prefix.
 */

let server: RedisServer;
let client: Redis;
let seq = 0;

beforeAll(async () => {
  server = await startRedis();
  client = await connectClient(server.port);
});

afterAll(async () => {
  await stopAll();
});

function freshPrefix(): string {
  return `ps${++seq}-${process.pid}:`;
}

/** A store on its own client, as one process of a fleet would have. */
async function processOn(options: Partial<ConstructorParameters<typeof RedisStateStore>[0]> = {}) {
  const redis = await connectClient(server.port);
  const store = new RedisStateStore({ redis, ...options });
  const close = async () => {
    await store.close();
    redis.disconnect();
  };
  return { redis, store, close };
}

describe('a guarding store announces itself', () => {
  it('once started: complete, its states, no writes in flight tracked without the fence', async () => {
    const prefix = freshPrefix();
    await client.set(`${prefix}state:acme`, 'maintenance');
    const operator = await processOn({ prefix, subscribe: false, announce: false });
    const app = await processOn({ prefix });
    expect(await operator.store.processes()).toEqual([]); // not started yet: nothing to say
    await app.store.ready();
    const [one, ...others] = await waitFor(
      async () => {
        const all = await operator.store.processes();
        return all.length === 1 && all[0]?.mode === 'complete' ? all : null;
      },
      { what: 'the announcement' },
    );
    expect(others).toEqual([]);
    expect(one).toMatchObject({
      host: hostname(),
      pid: process.pid,
      mode: 'complete',
      cause: null,
      states: 1,
      inflight: null,
      ttl: 3000,
    });
    expect(one?.id).toMatch(new RegExp(`^${hostname()}:${process.pid}:[a-z0-9]+$`));
    // The canary's key and the announcement's share the store's id.
    expect(await client.exists(`${prefix}canary:${one?.id}`)).toBe(1);
    expect(one?.announcedAgo).toBeGreaterThanOrEqual(0);
    expect(one?.announcedAgo).toBeLessThan(3000);
    const pttl = await client.pttl(`${prefix}ps:${one?.id}`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(3000);
    expect(await client.zrange(`${prefix}ps`, '0', '-1')).toEqual([one?.id]);

    // The operator's store, started by a read, does not announce itself.
    expect(await operator.store.get('acme')).toEqual({ state: 'maintenance' });
    await sleep(1200);
    expect((await operator.store.processes()).map((p) => p.id)).toEqual([one?.id]);

    // Closed: gone at once, and nothing stays behind.
    await app.close();
    expect(await operator.store.processes()).toEqual([]);
    expect(await client.keys(`${prefix}ps*`)).toEqual([]);
    await operator.close();
  });

  it('with fence: true, its writes in flight per namespace', async () => {
    const prefix = freshPrefix();
    const app = await processOn({ prefix, heartbeatTtl: 1000 });
    const guard = namespaceReadOnly({ store: app.store, fence: true });
    await app.store.ready();
    let release: () => void = () => undefined;
    const held = guard.runWrite('acme', () => new Promise<void>((done) => (release = done)));
    const [busy] = await waitFor(
      async () => {
        const all = await app.store.processes();
        return all[0]?.inflight?.acme === 1 ? all : null;
      },
      { what: 'a write in flight to acme', timeout: 5000 },
    );
    expect(busy?.inflight).toEqual({ acme: 1, '*': 1 });
    release();
    await held;
    await waitFor(async () => (await app.store.processes())[0]?.inflight?.['*'] === 0, {
      what: 'no write in flight',
      timeout: 5000,
    });
    await guard.close();
    await app.close();
  });

  it('with subscribe: false (degraded, not-configured): on a timer of its own', async () => {
    const prefix = freshPrefix();
    const app = await processOn({ prefix, subscribe: false });
    expect(await app.store.get('acme')).toBeNull(); // starts it
    const first = await waitFor(async () => (await app.store.processes())[0], {
      what: 'the announcement',
    });
    expect(first).toMatchObject({ mode: 'degraded', cause: 'not-configured', states: null });
    // Renewed: the announcement is rewritten at least once a second or so.
    await waitFor(async () => (await app.store.processes())[0]?.announcedAt !== first.announcedAt, {
      what: 'a renewed announcement',
      timeout: 3000,
    });
    await app.close();
    expect(await client.keys(`${prefix}ps*`)).toEqual([]);
  });

  it('a process gone without close() drops out once its key expires', async () => {
    const prefix = freshPrefix();
    const app = await processOn({ prefix, subscribe: false });
    const operator = await processOn({ prefix, subscribe: false, announce: false });
    await app.store.ready();
    const [live] = await waitFor(async () => operator.store.processes(), {
      what: 'the announcement',
    });
    // Its key gone (as if it had died and the TTL run out): not listed, whatever the set holds.
    await client.del(`${prefix}ps:${live?.id}`);
    expect(await client.zscore(`${prefix}ps`, String(live?.id))).not.toBeNull();
    expect(await operator.store.processes()).toEqual([]);
    await app.close();
    await operator.close();
  });

  it('drops ids dead for long from the set and gives the set a TTL', async () => {
    const prefix = freshPrefix();
    await client.zadd(`${prefix}ps`, Date.now() - KEEP_IDS_MS - 1000, 'gone:1:x');
    await client.zadd(`${prefix}ps`, Date.now() - 1000, 'recent:2:y');
    const app = await processOn({ prefix });
    await app.store.ready();
    await waitFor(async () => (await client.zscore(`${prefix}ps`, 'gone:1:x')) === null, {
      what: 'the long-dead id dropped',
    });
    // Dead for a moment only: kept in the set, but not listed (its key is gone).
    expect(await client.zscore(`${prefix}ps`, 'recent:2:y')).not.toBeNull();
    expect((await app.store.processes()).map((p) => p.pid)).toEqual([process.pid]);
    const ttl = await client.pttl(`${prefix}ps`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(KEEP_IDS_MS);
    await app.close();
  });

  it('costs one SET and one ZADD per tick, and no script', async () => {
    const prefix = freshPrefix();
    const app = await processOn({ prefix });
    await app.store.ready();
    await sleep(300); // past the first announcement, which also tidies the set
    const before = await commandCalls(server);
    await sleep(3500);
    const after = await commandCalls(server);
    const delta = (c: string) => (after[c] ?? 0) - (before[c] ?? 0);
    // Three ticks or four; the canary is the other SET of each tick.
    expect(delta('zadd')).toBeGreaterThanOrEqual(2);
    expect(delta('zadd')).toBeLessThanOrEqual(4);
    // (A tick split by the counters' reading may count one SET without its partner.)
    expect(Math.abs(delta('set') - 2 * delta('zadd'))).toBeLessThanOrEqual(1);
    expect(delta('eval') + delta('evalsha')).toBe(0);
    await app.close();
  });
});
