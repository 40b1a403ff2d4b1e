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
 * and stalled (sockets open, no bytes). Every request must still be answered within the time
 * budget, by the policy: last-known values while they are young enough, then `onStoreError`.
 * The bounds below are correctness bounds (no request waits on a dead Redis), not performance
 * assertions.
 */

const WRITE = (ns: string) => `/${ns}/proj/-/issues`;
/** No request may wait on Redis much longer than the read budget; generous for a loaded CI box. */
const ANSWER_BOUND_MS = 1000;

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
  let store: RedisStateStore;
  /** Per Express major: a fail-closed app and a fail-open app on the same store. */
  let apps: { name: string; closed: App; open: App }[];

  beforeAll(async () => {
    server = await startRedis(['--notify-keyspace-events', 'K$gx']);
    client = await connectClient(server.port);
    store = new RedisStateStore({ redis: client, timeout: 100, staleIfError: 30_000 });
    apps = expressVersions.map(({ name, express }) => ({
      name,
      closed: guardedApp(express, { store, onStoreError: 'closed' }),
      open: guardedApp(express, { store, onStoreError: 'open' }),
    }));
    expect(await store.ready()).toMatchObject({ subscribed: true, keyspaceEvents: true });
  });

  afterAll(async () => {
    await store.close();
    client.disconnect();
    await server.stop();
  });

  it('keeps answering within the budget by the policy, opens the circuit, and recovers', async () => {
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
        await sleep(5);
      }
    })();

    await sleep(100);
    const beforeKill = results.length;
    await server.kill();
    const killedAt = Date.now();
    // Until the circuit has opened at least once under this traffic.
    await waitFor(() => store.status().circuitOpen, {
      timeout: 3000,
      interval: 2,
      what: 'the circuit to open',
    });
    await sleep(1500); // through a cool-down and a failed probe
    stop = true;
    await traffic;

    const during = results.slice(beforeKill);
    const maxMs = Math.max(...during.map((e) => e.r.ms));
    console.log(
      `redis killed: ${during.length} requests in ${Date.now() - killedAt} ms, max latency ${maxMs} ms`,
    );
    expect(maxMs).toBeLessThan(ANSWER_BOUND_MS);
    for (const { what, app, r } of during) {
      const label = `${what} on ${app}`;
      if (what === 'frozen') {
        // The last-known value (young enough for staleIfError) keeps the namespace closed.
        expect(r.status, label).toBe(503);
        expect(r.namespaceHeader, label).toBe('frozen');
      } else if (what === 'warm') {
        // Known writable, and still within staleIfError.
        expect(r.status, label).toBe(200);
      } else if (what === 'cold-open') {
        expect(r.status, label).toBe(200);
        expect(r.handled, label).toBe(true);
      } else if (r.status !== 200) {
        // cold-closed: blocked once the state is unreadable (a request answered just before
        // the kill took effect may still have read Redis).
        expect(r.status, label).toBe(503);
        expect(r.handled, label).toBe(false);
      }
    }
    const coldClosed = during.filter((e) => e.what === 'cold-closed');
    expect(coldClosed.filter((e) => e.r.status === 503).length).toBeGreaterThan(
      coldClosed.length / 2,
    );
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
      timeout: 5000,
      what: 'the subscriber to come back',
    });
    expect(store.status()).toMatchObject({
      subscribed: true,
      keyspaceEvents: true,
      circuitOpen: false,
    });
    // The restarted server lost its data: `frozen` is writable, and changes are pushed again.
    await waitFor(async () => (await timedPost(app, WRITE('frozen'))).status === 200, {
      timeout: 3000,
      what: 'frozen to read as writable from the empty server',
    });
    await server.cli('set', 'nsro:state:frozen', 'maintenance');
    await waitFor(async () => (await timedPost(app, WRITE('frozen'))).status === 503, {
      timeout: 2000,
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
  let store: RedisStateStore;
  let closed: App;
  let open: App;
  const TIMEOUT = 100;
  const TTL = 200;
  /** What one request may add to the read budget: Express, supertest, a loaded CI machine. */
  const MARGIN = 150;

  beforeAll(async () => {
    server = await startRedis();
    proxy = await stallProxy(server.port);
    // The app's client, and through it the store's subscriber, reach Redis via the proxy.
    client = await connectClient(proxy.port);
    // No keyspace events: entries live `ttl`, so a stalled Redis is actually asked.
    store = new RedisStateStore({
      redis: client,
      timeout: TIMEOUT,
      ttl: TTL,
      staleIfError: 30_000,
    });
    const express = expressVersions[0].express;
    closed = guardedApp(express, { store, onStoreError: 'closed' });
    open = guardedApp(express, { store, onStoreError: 'open' });
    expect(await store.ready()).toMatchObject({ subscribed: true, keyspaceEvents: false });
    expect(proxy.connections).toBe(2); // the app's client and the store's subscriber
  });

  afterAll(async () => {
    proxy.resume();
    await store.close();
    client.disconnect();
    await proxy.close();
    await server.stop();
  });

  it('answers every request within the read budget by the policy, and recovers on resume', async () => {
    // Set by the operator (no announcement in flight when the line stalls).
    await server.cli('set', 'nsro:state:stalled', 'maintenance');
    expect((await timedPost(closed, WRITE('stalled'))).status).toBe(503);
    expect((await timedPost(closed, WRITE('flowing'))).status).toBe(200);

    proxy.stall();
    await sleep(TTL + 50); // every cached entry is now due for a re-read

    // The first miss, while the circuit is still closed: it has to wait for the budget.
    const firstCold = await timedPost(closed, WRITE('first-cold'));
    console.log(
      `redis stalled: first cold miss answered ${firstCold.status} in ${firstCold.ms} ms (timeout ${TIMEOUT} ms; circuit open after it: ${store.status().circuitOpen})`,
    );
    expect(firstCold.status).toBe(503);
    expect(firstCold.handled).toBe(false);
    // One read, one budget: a failed miss is not retried.
    expect(firstCold.ms).toBeLessThan(TIMEOUT + MARGIN);

    const results: { what: string; r: Timed }[] = [];
    const stalledAt = Date.now();
    for (let i = 0; Date.now() - stalledAt < 1500; i++) {
      results.push({ what: 'stalled', r: await timedPost(closed, WRITE('stalled')) });
      results.push({ what: 'flowing', r: await timedPost(closed, WRITE('flowing')) });
      results.push({ what: 'cold-closed', r: await timedPost(closed, WRITE(`sc${i}`)) });
      results.push({ what: 'cold-open', r: await timedPost(open, WRITE(`so${i}`)) });
    }
    const circuitOpen = store.status().circuitOpen;
    const byWhat = (what: string) => results.filter((e) => e.what === what).map((e) => e.r);
    const max = (what: string) => Math.max(...byWhat(what).map((r) => r.ms));
    console.log(
      `redis stalled: ${results.length} requests; max latency ms: ` +
        ['stalled', 'flowing', 'cold-closed', 'cold-open'].map((w) => `${w}=${max(w)}`).join(' '),
    );
    // The read budget, not the stall, bounds every request.
    for (const { what, r } of results) {
      expect(r.ms, what).toBeLessThan(TIMEOUT + MARGIN);
    }
    // Last-known values keep applying; unknown namespaces follow onStoreError.
    for (const r of byWhat('stalled')) {
      expect(r).toMatchObject({ status: 503, namespaceHeader: 'stalled', handled: false });
    }
    for (const r of byWhat('flowing')) expect(r).toMatchObject({ status: 200, handled: true });
    for (const r of byWhat('cold-closed')) expect(r).toMatchObject({ status: 503, handled: false });
    for (const r of byWhat('cold-open')) expect(r).toMatchObject({ status: 200, handled: true });
    expect(circuitOpen).toBe(true);

    proxy.resume();
    await waitFor(async () => (await timedPost(closed, WRITE('after-stall'))).status === 200, {
      timeout: 5000,
      interval: 20,
      what: 'writes to pass after the stall',
    });
    expect(store.status()).toMatchObject({ circuitOpen: false, subscribed: true });
    expect((await timedPost(closed, WRITE('stalled'))).status).toBe(503);
    await store.delete('stalled');
    await waitFor(async () => (await timedPost(closed, WRITE('stalled'))).status === 200, {
      timeout: 2000,
      what: 'the delete to be seen',
    });
  });
});
