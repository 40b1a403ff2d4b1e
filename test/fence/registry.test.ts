import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessInfo } from '../../src/errors.js';
import { heartbeat, liveProcesses } from '../../src/fence/registry.js';
import { namespaceReadOnly, RedisStateStore } from '../../src/index.js';
import { RedisKeys } from '../../src/stores/redis/keys.js';
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
 * The registry of live processes (src/fence/registry.ts) against a real redis-server: its
 * scripts on their own, then as an operator's `store.wait()` sees it. On a Cluster:
 * test/integration/redis-cluster.test.ts.
 */

const keys = new RedisKeys();
let server: RedisServer;
let client: Redis;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startRedis();
  client = await connectClient(server.port);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await client.flushall();
});

afterAll(async () => {
  await stopAll();
});

function info(id: string): ProcessInfo {
  return { id, host: 'web-1', pid: 42, startedAt: '2026-01-01T00:00:00.000Z', inflight: {} };
}

/** Redis's clock in ms. */
async function redisNow(): Promise<number> {
  const [s, us] = await client.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

describe('the registry scripts', () => {
  it('scores a heartbeat with the end of its lease on Redis clock, and keeps the details as long', async () => {
    const before = await redisNow();
    await heartbeat(client, keys, info('web-1:42:a'), 60_000);
    const after = await redisNow();
    const score = Number(await client.zscore('nsro:procs', 'web-1:42:a'));
    expect(score).toBeGreaterThanOrEqual(before + 60_000);
    expect(score).toBeLessThanOrEqual(after + 60_000);
    expect(await client.pttl('nsro:proc:web-1:42:a')).toBeGreaterThan(59_000);
    expect(await liveProcesses(client, keys)).toEqual([info('web-1:42:a')]);
  });

  it('stops counting a process once its lease is over, and the next heartbeat drops it', async () => {
    await heartbeat(client, keys, info('web-1:42:dead'), 100);
    await heartbeat(client, keys, info('web-1:42:live'), 60_000);
    await sleep(150);
    expect((await liveProcesses(client, keys)).map((p) => p.id)).toEqual(['web-1:42:live']);
    expect(await client.zscore('nsro:procs', 'web-1:42:dead')).not.toBeNull(); // not yet dropped
    await heartbeat(client, keys, info('web-1:42:live'), 60_000);
    expect(await client.zrange('nsro:procs', '0', '-1')).toEqual(['web-1:42:live']);
  });

  it('never shortens the set TTL: a process with a short heartbeatTtl cannot expire a long lease', async () => {
    await heartbeat(client, keys, info('web-1:42:long'), 60_000);
    await heartbeat(client, keys, info('web-1:42:short'), 100);
    expect(await client.pttl('nsro:procs')).toBeGreaterThan(100_000);
    await sleep(250); // the short one's set TTL (200 ms) would have expired the set
    expect((await liveProcesses(client, keys)).map((p) => p.id)).toEqual(['web-1:42:long']);
  });

  it('still counts a live process whose details were lost, with what its id tells', async () => {
    await heartbeat(client, keys, info('web-1.example:4121:k2j'), 60_000);
    await client.del('nsro:proc:web-1.example:4121:k2j');
    expect(await liveProcesses(client, keys)).toEqual([
      {
        id: 'web-1.example:4121:k2j',
        host: 'web-1.example',
        pid: 4121,
        startedAt: '',
        inflight: {},
      },
    ]);
  });

  it('leaves nothing behind once its processes are gone', async () => {
    await heartbeat(client, keys, info('web-1:42:a'), 100);
    await heartbeat(client, keys, info('web-1:42:b'), 100);
    expect(await client.pttl('nsro:procs')).toBeGreaterThan(0);
    await sleep(250); // twice heartbeatTtl, and a margin
    expect(await client.keys('nsro:*')).toEqual([]);
  });
});

/** One guarding process: a store on its own client, and a guard that registers it. */
async function guarded(heartbeatTtl = 1000) {
  const redis = await connectClient(server.port);
  const store = new RedisStateStore({ redis, heartbeatTtl });
  const guard = namespaceReadOnly({ store, fence: true });
  cleanups.push(async () => {
    await guard.close();
    await store.close();
    redis.disconnect();
  });
  await store.ready();
  return { redis, store, guard };
}

/** The operator: a store that does not guard, with its own client. */
async function operator() {
  const redis = await connectClient(server.port);
  const store = new RedisStateStore({ redis, subscribe: false });
  cleanups.push(() => store.close());
  return store;
}

async function registered(): Promise<string[]> {
  return liveProcesses(client, keys).then((all) => all.map((p) => p.id).sort());
}

describe('the live set, as a wait sees it', () => {
  it('waits without any SCAN, however many unrelated keys there are', async () => {
    for (let i = 0; i < 10_000; i += 1000) {
      const multi = client.multi();
      for (let j = i; j < i + 1000; j++) multi.set(`app:cache:${j}`, 'x');
      await multi.exec();
    }
    await guarded();
    await guarded();
    await waitFor(async () => (await registered()).length === 2, { what: 'both registrations' });
    const op = await operator();
    await op.enable('acme');
    const before = await commandCalls(server);
    const result = await op.wait('acme', { timeout: 5000 });
    const after = await commandCalls(server);
    const scans = (after.scan ?? 0) - (before.scan ?? 0);
    console.log(`registry: a wait with 10,000 unrelated keys: ${scans} SCAN, ${result.ms} ms`);
    expect(scans).toBe(0);
    expect(result.processes.map((p) => p.id).sort()).toEqual(await registered());
    expect(result.processes).toHaveLength(2);
  });

  it('drops a process that stops at once, and its acknowledgements', async () => {
    const first = await guarded();
    await waitFor(async () => (await registered()).length === 1, {
      what: 'the first registration',
    });
    const [id = ''] = await registered();
    await guarded();
    await waitFor(async () => (await registered()).length === 2, { what: 'both registrations' });
    const op = await operator();
    await op.enable('acme');
    expect((await op.wait('acme', { timeout: 5000 })).processes).toHaveLength(2);
    expect(await client.hget('nsro:fence:acme', id)).toBe('1');
    await first.guard.close(); // its last guard: the process stops taking part
    expect(await registered()).toHaveLength(1);
    expect(await registered()).not.toContain(id);
    expect(await client.hexists('nsro:fence:acme', id)).toBe(0);
    expect((await op.wait('acme', { timeout: 5000 })).processes).toHaveLength(1);
  });

  it('stops waiting for a process that died without stopping once its lease is over', async () => {
    await guarded(60_000);
    await waitFor(async () => (await registered()).length === 1, {
      what: 'the first registration',
    });
    const [survivor] = await registered();
    const doomed = await guarded(500);
    await waitFor(async () => (await registered()).length === 2, { what: 'both registrations' });
    const op = await operator();
    await op.enable('acme');
    // Dead as far as Redis can tell: no heartbeat, no acknowledgement, and no deregistration.
    doomed.redis.disconnect();
    const died = performance.now();
    const id = (await registered()).find((p) => p !== survivor) ?? '';
    const leaseEnd = Number(await client.zscore('nsro:procs', id));
    const result = await op.wait('acme', { timeout: 5000 });
    const returnedAt = await redisNow();
    console.log(
      `registry: the wait returned ${Math.round(performance.now() - died)} ms after the death ` +
        '(heartbeatTtl 500 ms)',
    );
    expect(result.processes.map((p) => p.id)).toEqual([survivor]);
    // It counted the dead process for as long as its lease could last.
    expect(returnedAt).toBeGreaterThanOrEqual(leaseEnd);
  });

  it('leaves every fence key with a TTL after a wait', async () => {
    await guarded(1000);
    const op = await operator();
    await op.enable('acme');
    await waitFor(async () => (await registered()).length === 1, { what: 'the registration' });
    await op.wait('acme', { timeout: 5000 });
    const fence = await client.pttl('nsro:fence:acme');
    const procs = await client.pttl('nsro:procs');
    console.log(`registry: after a wait, PTTL nsro:fence:acme ${fence}, nsro:procs ${procs}`);
    expect(fence).toBeGreaterThan(0);
    expect(procs).toBeGreaterThan(0);
    expect(procs).toBeLessThanOrEqual(2000);
    const [proc] = await client.keys('nsro:proc:*');
    expect(await client.pttl(proc ?? '')).toBeGreaterThan(0);
  });
});
