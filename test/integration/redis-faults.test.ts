import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStateStore } from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import {
  connectClient,
  type RedisServer,
  type StallProxy,
  sleep,
  stallProxy,
  startRedis,
  stopAll,
  waitFor,
} from '../helpers/redis.js';

/**
 * Redis failing under a running app: killed (connection refused), restarted on the same port,
 * and stalled (sockets open, no bytes). Every request must still be answered, by the policy:
 * last-known values while they are young enough, then `onStoreError`. No request may wait on
 * Redis: each is answered while Redis is still dead or the line still stalled (the test only
 * brings it back once the traffic is over), so one that waited would hang the test.
 */

const WRITE = (ns: string) => `/${ns}/proj/-/issues`;

/** `client`, recording the keys of every MGET (a read of states) sent through it. */
function recordingReads(client: Redis): { redis: Redis; reads: string[][] } {
  const reads: string[][] = [];
  const redis = new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'mget') {
        return (...keys: string[]) => {
          reads.push(keys.flat());
          return target.mget(...keys);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { redis, reads };
}

/**
 * Waits until the circuit has opened, let a probe through after its cool-down (a read sent
 * while it was open), and opened again: the probe failed.
 */
async function throughAFailedProbe(store: RedisStateStore, reads: readonly unknown[]) {
  let sentWhenOpen = -1;
  await waitFor(
    () => {
      const open = store.status().circuitOpen;
      if (sentWhenOpen === -1 && open) sentWhenOpen = reads.length;
      return sentWhenOpen !== -1 && reads.length > sentWhenOpen && open;
    },
    // 10 s: 10x the circuit's 1 s cool-down.
    { timeout: 10_000, interval: 2, what: 'the circuit to open, probe and open again' },
  );
}

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason);
};

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await stopAll();
});

afterEach(() => {
  expect(unhandled, 'unhandled rejections').toEqual([]);
});

type App = ReturnType<typeof guardedApp>;

interface Timed {
  status: number;
  ms: number;
  namespaceHeader: string | undefined;
  handled: boolean;
}

async function timedPost(app: App, path: string): Promise<Timed> {
  const handledBefore = app.handled.length;
  const started = Date.now();
  const res = await request(app.app).post(path).set('Accept', 'application/json');
  return {
    status: res.status,
    ms: Date.now() - started,
    namespaceHeader: res.headers['x-namespace-read-only'],
    handled: app.handled.length > handledBefore,
  };
}

describe('Redis killed and restarted', () => {
  let server: RedisServer;
  let client: Redis;
  let reads: string[][];
  let store: RedisStateStore;
  /** Per Express major: a fail-closed app and a fail-open app on the same store. */
  let apps: { name: string; closed: App; open: App }[];

  beforeAll(async () => {
    server = await startRedis(['--notify-keyspace-events', 'K$gx']);
    client = await connectClient(server.port);
    const recorded = recordingReads(client);
    reads = recorded.reads;
    store = new RedisStateStore({ redis: recorded.redis, timeout: 100, staleIfError: 30_000 });
    apps = expressVersions.map(({ name, express }) => ({
      name,
      closed: guardedApp(express, { store, onStoreError: 'closed' }),
      open: guardedApp(express, { store, onStoreError: 'open' }),
    }));
    expect(await store.ready()).toMatchObject({ subscribed: true, mode: 'complete' });
  });

  afterAll(async () => {
    await store.close();
    client.disconnect();
    await server.stop();
  });

  it('keeps answering by the policy while Redis is dead, opens the circuit, and recovers', async () => {
    await store.set('frozen', { state: 'maintenance', message: 'Frozen' });
    // Warm the cache: `frozen` known closed, `warm` known writable.
    for (const { closed } of apps) {
      expect((await timedPost(closed, WRITE('frozen'))).status).toBe(503);
      expect((await timedPost(closed, WRITE('warm'))).status).toBe(200);
    }

    // Traffic keeps flowing while Redis dies mid-test.
    const results: { what: string; app: string; r: Timed }[] = [];
    let round = 0;
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        round++;
        for (const { name, closed, open } of apps) {
          results.push({ what: 'frozen', app: name, r: await timedPost(closed, WRITE('frozen')) });
          results.push({ what: 'warm', app: name, r: await timedPost(closed, WRITE('warm')) });
          results.push({
            what: 'cold-closed',
            app: name,
            r: await timedPost(closed, WRITE(`coldc${round}`)),
          });
          results.push({
            what: 'cold-open',
            app: name,
            r: await timedPost(open, WRITE(`coldo${round}`)),
          });
        }
        await sleep(5); // pacing of the traffic, not a wait
      }
    })();

    await waitFor(() => round > 1, { what: 'traffic flowing' });
    const beforeKill = results.length;
    await server.kill();
    const killedAt = Date.now();
    // Under this traffic, through a cool-down and a failed probe.
    await throughAFailedProbe(store, reads);
    stop = true;
    await traffic; // every request answered, Redis still dead

    const during = results.slice(beforeKill);
    const maxMs = Math.max(...during.map((e) => e.r.ms));
    console.log(
      `redis killed: ${during.length} requests in ${Date.now() - killedAt} ms, max latency ${maxMs} ms (not asserted)`,
    );
    for (const { what, app, r } of during) {
      const label = `${what} on ${app}`;
      if (what === 'frozen') {
        // The last-known value (young enough for staleIfError) keeps the namespace closed.
        expect(r.status, label).toBe(503);
        expect(r.namespaceHeader, label).toBe('frozen');
      } else if (what === 'warm') {
        // Known writable, and still within staleIfError.
        expect(r.status, label).toBe(200);
      } else {
        // Never seen, under either policy: the last complete knowledge (young enough for
        // staleIfError) says it has no state, so it is writable.
        expect(r.status, label).toBe(200);
        expect(r.handled, label).toBe(true);
      }
    }
    expect(store.status().subscribed).toBe(false);

    // Back on the same port, nothing restarted in the app.
    await server.restart();
    const restartedAt = Date.now();
    const app = apps[0]?.closed as App;
    await waitFor(async () => (await timedPost(app, WRITE('newcomer'))).status === 200, {
      timeout: 10_000,
      interval: 50,
      what: 'writes to pass again after the restart',
    });
    console.log(`redis restarted: writable again after ${Date.now() - restartedAt} ms`);
    await waitFor(() => store.status().subscribed, {
      timeout: 10_000,
      what: 'the subscriber to come back',
    });
    await waitFor(() => store.status().mode === 'complete', { what: 'complete again' });
    expect(store.status().subscribed).toBe(true);
    // The restarted server lost its data: `frozen` is writable, and changes are pushed again.
    await waitFor(async () => (await timedPost(app, WRITE('frozen'))).status === 200, {
      timeout: 10_000,
      what: 'frozen to read as writable from the empty server',
    });
    await server.cli('set', 'nsro:state:frozen', 'maintenance');
    // Complete again: no request reads Redis, so only the push can tell the store.
    await waitFor(async () => (await timedPost(app, WRITE('frozen'))).status === 503, {
      timeout: 10_000,
      interval: 5,
      what: 'a redis-cli SET to be pushed after recovery',
    });
    await server.cli('del', 'nsro:state:frozen');
  });
});

describe('Redis stalled (sockets open, no bytes)', () => {
  let server: RedisServer;
  let proxy: StallProxy;
  let client: Redis;
  let reads: string[][];
  let store: RedisStateStore;
  let closed: App;
  let open: App;
  const TIMEOUT = 100;
  const TTL = 200;

  beforeAll(async () => {
    server = await startRedis();
    proxy = await stallProxy(server.port);
    // The app's client, and through it the store's subscriber, reach Redis via the proxy.
    client = await connectClient(proxy.port);
    const recorded = recordingReads(client);
    reads = recorded.reads;
    // No keyspace events (and 'auto' leaves them off): the degraded mode, where entries live
    // `ttl`, so a stalled Redis is actually asked.
    store = new RedisStateStore({
      redis: recorded.redis,
      keyspaceEvents: 'auto',
      timeout: TIMEOUT,
      ttl: TTL,
      staleIfError: 30_000,
    });
    const express = expressVersions[0].express;
    closed = guardedApp(express, { store, onStoreError: 'closed' });
    open = guardedApp(express, { store, onStoreError: 'open' });
    expect(await store.ready()).toMatchObject({ subscribed: true, mode: 'degraded' });
    expect(proxy.connections).toBe(2); // the app's client and the store's subscriber
  });

  afterAll(async () => {
    proxy.resume();
    await store.close();
    client.disconnect();
    await proxy.close();
    await server.stop();
  });

  it('answers every request by the policy while the line is stalled, and recovers on resume', async () => {
    // Set by the operator (no announcement in flight when the line stalls).
    await server.cli('set', 'nsro:state:stalled', 'maintenance');
    expect((await timedPost(closed, WRITE('stalled'))).status).toBe(503);
    expect((await timedPost(closed, WRITE('flowing'))).status).toBe(200);

    proxy.stall();
    // Every cached entry is now due for a re-read.
    await waitFor(() => ['stalled', 'flowing', '*'].every((k) => store.peek(k) === undefined), {
      what: 'the cached entries to expire',
    });

    // The first miss, while the circuit is still closed: it has to wait for the budget.
    const firstCold = await timedPost(closed, WRITE('first-cold'));
    console.log(
      `redis stalled: first cold miss answered ${firstCold.status} in ${firstCold.ms} ms (timeout ${TIMEOUT} ms; circuit open after it: ${store.status().circuitOpen})`,
    );
    expect(firstCold.status).toBe(503);
    expect(firstCold.handled).toBe(false);
    // One read, one budget: a failed miss is not retried.
    expect(reads.filter((keys) => keys.includes('nsro:state:first-cold'))).toHaveLength(1);

    // Traffic through the circuit opening, its cool-down and a probe that fails again. The
    // line stays stalled throughout (it is resumed below): every request answered here was
    // answered by the read budget, not by Redis.
    const results: { what: string; r: Timed }[] = [];
    let sentWhenOpen = -1;
    let probed = false;
    for (let i = 0; !probed && i < 10_000; i++) {
      results.push({ what: 'stalled', r: await timedPost(closed, WRITE('stalled')) });
      results.push({ what: 'flowing', r: await timedPost(closed, WRITE('flowing')) });
      results.push({ what: 'cold-closed', r: await timedPost(closed, WRITE(`sc${i}`)) });
      results.push({ what: 'cold-open', r: await timedPost(open, WRITE(`so${i}`)) });
      const circuitOpen = store.status().circuitOpen;
      if (sentWhenOpen === -1 && circuitOpen) sentWhenOpen = reads.length;
      probed = sentWhenOpen !== -1 && reads.length > sentWhenOpen && circuitOpen;
    }
    const byWhat = (what: string) => results.filter((e) => e.what === what).map((e) => e.r);
    const max = (what: string) => Math.max(...byWhat(what).map((r) => r.ms));
    console.log(
      `redis stalled: ${results.length} requests; max latency ms (not asserted): ` +
        ['stalled', 'flowing', 'cold-closed', 'cold-open'].map((w) => `${w}=${max(w)}`).join(' '),
    );
    expect(sentWhenOpen, 'the circuit opened').not.toBe(-1);
    expect(probed, 'a probe after the cool-down failed and reopened the circuit').toBe(true);
    // Last-known values keep applying; unknown namespaces follow onStoreError.
    for (const r of byWhat('stalled')) {
      expect(r).toMatchObject({ status: 503, namespaceHeader: 'stalled', handled: false });
    }
    for (const r of byWhat('flowing')) expect(r).toMatchObject({ status: 200, handled: true });
    for (const r of byWhat('cold-closed')) expect(r).toMatchObject({ status: 503, handled: false });
    for (const r of byWhat('cold-open')) expect(r).toMatchObject({ status: 200, handled: true });

    proxy.resume();
    await waitFor(async () => (await timedPost(closed, WRITE('after-stall'))).status === 200, {
      timeout: 10_000,
      interval: 20,
      what: 'writes to pass after the stall',
    });
    expect(store.status()).toMatchObject({ circuitOpen: false, subscribed: true });
    expect((await timedPost(closed, WRITE('stalled'))).status).toBe(503);
    await store.delete('stalled');
    await waitFor(async () => (await timedPost(closed, WRITE('stalled'))).status === 200, {
      timeout: 10_000,
      what: 'the delete to be seen',
    });
  });
});
