import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ACK_SCRIPT } from '../../src/fence/member.js';
import { HEARTBEAT_SCRIPT } from '../../src/fence/registry.js';
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

interface Probe {
  /** The client to give the store: `client`, watched. */
  readonly redis: Redis;
  /** Reads of the instance key's PTTL that began while held. */
  readonly started: number;
  /** From now on, reading the instance key's PTTL waits for `release()`. */
  hold(): void;
  release(): void;
  /** Resolves at the next heartbeat (the registry's script) written after this call. */
  nextBeat(): Promise<void>;
  /** The fence requests its subscriber received (each seen by the store first). */
  readonly requests: readonly { readonly epoch: number; readonly wait: string }[];
}

/**
 * The app's client, watched. While held, `PTTL` of the instance key waits for the test to
 * release it: the instance state then needs a second round trip that lasts exactly as long as
 * the race needs, however slow the machine.
 */
function probe(client: Redis): Probe {
  let gate: Promise<void> | null = null;
  let open = () => {};
  let beat: (() => void) | null = null;
  let started = 0;
  const requests: { epoch: number; wait: string }[] = [];
  const redis = new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'duplicate') {
        // The store's subscriber: it adds its own listener after this one, in the same emit.
        return (...args: Parameters<Redis['duplicate']>) => {
          const connection = target.duplicate(...args);
          connection.on('message', (channel: string, message: string) => {
            if (channel === 'nsro:fence') requests.push(JSON.parse(message));
          });
          return connection;
        };
      }
      if (prop === 'pttl') {
        return async (key: string) => {
          if (gate !== null && key === 'nsro:state:*') {
            started++;
            await gate;
          }
          return target.pttl(key);
        };
      }
      if (prop === 'eval') {
        return (...args: Parameters<Redis['eval']>) => {
          if (args[0] === HEARTBEAT_SCRIPT) {
            beat?.();
            beat = null;
          }
          return target.eval(...args);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    redis,
    get started() {
      return started;
    },
    hold() {
      gate = new Promise((resolve) => {
        open = resolve;
      });
    },
    release() {
      gate = null;
      open();
    },
    nextBeat() {
      return new Promise((resolve) => {
        beat = resolve;
      });
    },
    requests,
  };
}

/** How the process's heartbeats fare: written and answered, refused, or answered late. */
type BeatMode = 'ok' | 'failing' | 'late';

/**
 * `client` with its heartbeats (the registry script) under the test's control. `late`: the
 * script reaches Redis at once but its reply is handed back only after the TTL it set has passed
 * (the behaviour under test: a reply slower than heartbeatTtl). `delivered` counts late replies
 * handed back.
 */
function heartbeats(client: Redis, heartbeatTtl: number) {
  const control = { mode: 'ok' as BeatMode, delivered: 0 };
  const redis = new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'eval') {
        return async (...args: Parameters<Redis['eval']>) => {
          const mode = args[0] === HEARTBEAT_SCRIPT ? control.mode : 'ok';
          if (mode === 'failing') throw new Error('unreachable');
          const calledAt = performance.now();
          const reply = await target.eval(...args);
          if (mode === 'late') {
            for (let left = calledAt + heartbeatTtl - performance.now(); left >= 0; ) {
              await sleep(left + 1);
              left = calledAt + heartbeatTtl - performance.now();
            }
            control.delivered++;
          }
          return reply;
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { redis, control };
}

/** `client`, counting the acknowledgements it records (ACK_SCRIPT). */
function countingEvals(client: Redis) {
  const count = { evals: 0 };
  const redis = new Proxy(client, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'eval') {
        return (...args: Parameters<Redis['eval']>) => {
          if (args[0] === ACK_SCRIPT) count.evals++;
          return target.eval(...args);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { redis, count };
}

/**
 * Heartbeats 15 s apart (a quarter of this TTL): a heartbeat while a fence runs is then the
 * process beating every 100 ms while it drains, i.e. waiting for the writes it counted.
 */
const QUIET_HEARTBEAT_TTL = 60_000;

/**
 * One guarded process: a write handler that takes `ms` (a write held open, so that it is in
 * flight) and then records its commit; under `/abandoned` it never answers. `seen` counts
 * requests that reached the guard, whose connection or response closed, and that the guard
 * admitted.
 */
async function app(redis: Redis, client: Redis, { ms = 50, heartbeatTtl = 1000, ttl = 1000 } = {}) {
  // A read budget no held read reaches: a held read must not turn into a store error. The
  // races here live in the per-key read path (the degraded mode): with the complete copy a
  // decision reads nothing, so there is no read for a fence to overtake.
  const store = new RedisStateStore({
    redis,
    heartbeatTtl,
    ttl,
    timeout: 10_000,
    keyspaceEvents: 'off',
  });
  const guard = namespaceReadOnly({ store, fence: true });
  const seen = { arrived: 0, closed: 0, admitted: 0 };
  const web = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.arrived++;
    res.on('close', () => seen.closed++);
    guard(req, res, () => {
      seen.admitted++;
      if ((req.url ?? '').endsWith('/abandoned')) return; // only its client can end it
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
  return { store, guard, seen, port: (web.address() as AddressInfo).port };
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
    const watch = probe(client);
    const p = await app(watch.redis, client, { heartbeatTtl: QUIET_HEARTBEAT_TTL });
    const op = await operator();
    await server.cli('set', 'nsro:state:*', 'active'); // present, so its read needs a PTTL
    expect(await post(p.port, '/acme/write')).toBe(201); // acme (open) and * now cached
    // `*` is re-read (a push announced it) and the read is held; acme stays cached as open.
    watch.hold();
    await client.publish('nsro:changes', '*');
    await waitFor(() => watch.started > 0, { what: 'the held instance read' });
    const write = post(p.port, '/acme/write'); // decided on acme=open once `*` arrives
    await waitFor(() => p.seen.arrived === 2, { what: 'the write to reach the guard' });
    const draining = watch.nextBeat();
    const fenced = op.fence('acme');
    // The instance read returns only after the fence looked: once the process drains for the
    // write (it counted it), or, had it not counted it, once the fence has already returned.
    await Promise.race([draining, fenced.catch(() => undefined)]);
    watch.release();
    await fenced;
    expect(await write).toBe(201);
    expect(await op.late('acme')).toBe(0);
  });

  it('waits for a runWrite whose check was still reading the instance state', async () => {
    const client = await connectClient(server.port);
    const watch = probe(client);
    const p = await app(watch.redis, client, { heartbeatTtl: QUIET_HEARTBEAT_TTL });
    const op = await operator();
    await server.cli('set', 'nsro:state:*', 'active');
    await p.guard.runWrite('acme', () => undefined);
    watch.hold();
    await client.publish('nsro:changes', '*');
    await waitFor(() => watch.started > 0, { what: 'the held instance read' });
    // runWrite counts itself and starts its check (acme cached open, `*` held) before it returns.
    const job = p.guard.runWrite('acme', async () => {
      await client.rpush('commits', 'acme');
    });
    const draining = watch.nextBeat();
    const fenced = op.fence('acme');
    await Promise.race([draining, fenced.catch(() => undefined)]);
    watch.release();
    await fenced;
    await job;
    expect(await op.late('acme')).toBe(0);
  });

  it('does not count for ever a write whose client hung up while its check was reading', async () => {
    const client = await connectClient(server.port);
    const watch = probe(client);
    const p = await app(watch.redis, client);
    const op = await operator();
    await server.cli('set', 'nsro:state:*', 'active');
    expect(await post(p.port, '/beta/write')).toBe(201);
    watch.hold();
    await client.publish('nsro:changes', '*');
    await waitFor(() => watch.started > 0, { what: 'the held instance read' });
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/acme/x' });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => p.seen.arrived === 2, { what: 'the write to reach the guard' });
    req.destroy(); // the connection closes before the guard has decided
    await waitFor(() => p.seen.closed === 2, { what: 'the server to see the connection close' });
    watch.release();
    // Decided (admitted: acme is open) after the response was already over.
    await waitFor(() => p.seen.admitted === 2, { what: 'the write to be admitted' });
    await expect(op.fence('acme', 3000)).resolves.toMatchObject({ namespace: 'acme' });
  });

  it('refuses writes once its heartbeat lapsed, and re-reads every state when it comes back', async () => {
    const client = await connectClient(server.port);
    const beats = heartbeats(client, 300);
    // No push reaches it and its cache entries live a minute: it would not hear of a change.
    const store = new RedisStateStore({
      redis: beats.redis,
      heartbeatTtl: 300,
      ttl: 60_000,
      subscribe: false,
    });
    const guard = namespaceReadOnly({ store, fence: true });
    cleanups.push(async () => {
      await guard.close();
      await store.close();
    });
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 'registration',
    });
    await guard.runWrite('acme', () => undefined); // acme cached as writable
    // Heartbeats fail for a while (Redis unreachable for this process, or the process paused).
    beats.control.mode = 'failing';
    await waitFor(async () => (await client.keys('nsro:proc:*')).length === 0, {
      what: 'the registration to expire',
    });
    // No wait counts it any more: it must not admit a write, even to a namespace it knows open.
    await expect(guard.runWrite('acme', () => undefined)).rejects.toMatchObject({
      code: 'ERR_NSRO_LEASE_LAPSED',
      refusal: 'lease-lapsed',
    });
    const op = await operator();
    await op.fence('acme'); // nobody left to wait for
    beats.control.mode = 'ok';
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 're-registration',
    });
    await expect(
      guard.runWrite('acme', () => client.rpush('commits', 'acme')),
    ).rejects.toMatchObject({ code: 'ERR_NSRO_MAINTENANCE', refusal: 'maintenance' });
    expect(await op.late('acme')).toBe(0);
  });

  it('does not extend its lease by a heartbeat whose reply came back after heartbeatTtl', async () => {
    const client = await connectClient(server.port);
    const beats = heartbeats(client, 300);
    const store = new RedisStateStore({ redis: beats.redis, heartbeatTtl: 300, subscribe: false });
    const guard = namespaceReadOnly({ store, fence: true });
    cleanups.push(async () => {
      await guard.close();
      await store.close();
    });
    await waitFor(async () => (await client.keys('nsro:proc:*')).length > 0, {
      what: 'registration',
    });
    await guard.runWrite('acme', () => undefined); // it holds its lease
    // Its registration is written in time, but it only hears so once the key may have expired.
    beats.control.mode = 'late';
    await waitFor(() => beats.control.delivered > 0, { what: 'a late heartbeat reply' });
    await expect(guard.runWrite('acme', () => undefined)).rejects.toMatchObject({
      refusal: 'lease-lapsed',
    });
  });

  it('acknowledges only once it has read the namespace closed itself, not from its cache', async () => {
    const client = await connectClient(server.port);
    // No keyspace events on this server and no announcement below: only a read of its own can
    // tell the process, whose cache trusts "open" for a minute.
    const p = await app(client, client, { ttl: 60_000 });
    const op = await operator();
    expect(await post(p.port, '/acme/write')).toBe(201); // acme cached as open
    await server.cli('set', 'nsro:state:acme', 'maintenance'); // as an operator types it
    await op.store.wait('acme');
    await client.rpush('commits', 'MARK');
    expect(await post(p.port, '/acme/write')).toBe(503);
    expect(await op.late('acme')).toBe(0);
  });

  it('stops counting an admitted write whose client hung up while it ran', async () => {
    const client = await connectClient(server.port);
    const p = await app(client, client);
    const op = await operator();
    const req = http.request({
      host: '127.0.0.1',
      port: p.port,
      method: 'POST',
      path: '/acme/abandoned',
    });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => p.seen.admitted === 1, { what: 'the write admitted' });
    req.destroy(); // its handler never answers; the client gives up
    await waitFor(() => p.seen.closed === 1, { what: 'the server to see the connection close' });
    await expect(op.fence('acme', 3000)).resolves.toMatchObject({ namespace: 'acme' });
  });

  it('acknowledges a wait whose first request came while it was busy with an earlier one', async () => {
    const client = await connectClient(server.port);
    const watch = probe(client);
    const p = await app(watch.redis, client);
    const op = await operator();
    let release = () => {};
    let running = false;
    const job = p.guard.runWrite('acme', () => {
      running = true;
      return new Promise<void>((resolve) => (release = resolve));
    });
    await waitFor(() => running, { what: 'the job admitted' });
    await op.store.enable('acme');
    const waits = () => new Set(watch.requests.map((r) => r.wait)).size;
    const first = op.store.wait('acme', { timeout: 10_000 }); // the process drains for the job
    await waitFor(() => waits() === 1, { what: 'the first request received' });
    // 3 s: over 10x the 250 ms between two requests of a wait.
    const second = op.store.wait('acme', { timeout: 3000 }).catch((e: unknown) => e);
    await waitFor(() => waits() === 2, { what: 'the first request of the second wait' });
    release(); // only now does the process finish with the first request
    await job;
    await expect(first).resolves.toMatchObject({ namespace: 'acme' });
    const result = await second;
    expect(result).not.toBeInstanceOf(FenceTimeoutError);
    expect(result).toMatchObject({ namespace: 'acme', processes: [{ pid: process.pid }] });
  });

  it('does the work for a wait once: the repeats of a request it acknowledged cost nothing', async () => {
    const client = await connectClient(server.port);
    const quick = countingEvals(client);
    await app(quick.redis, client); // acknowledges at once
    const other = await connectClient(server.port);
    const busy = await app(other, other); // holds a job on acme
    await waitFor(async () => (await client.keys('nsro:proc:*')).length === 2, {
      what: 'both registrations',
    });
    let release = () => {};
    let running = false;
    const job = busy.guard.runWrite('acme', () => {
      running = true;
      return new Promise<void>((resolve) => (release = resolve));
    });
    await waitFor(() => running, { what: 'the job admitted' });
    const op = await operator();
    // Repeated every 250 ms while the busy process holds the wait: some eight requests.
    const error = await op.fence('acme', 2000).catch((e: unknown) => e);
    release();
    await job;
    expect(error).toBeInstanceOf(FenceTimeoutError);
    expect((error as FenceTimeoutError).pending).toHaveLength(1);
    expect(quick.count.evals).toBe(1);
  });

  it('counts the writes of every guard that shares a store', async () => {
    const client = await connectClient(server.port);
    const store = new RedisStateStore({ redis: client, heartbeatTtl: 1000 });
    const web = namespaceReadOnly({ store, fence: true });
    const jobs: NamespaceReadOnlyMiddleware = namespaceReadOnly({ store, fence: true });
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
    const watch = probe(client);
    const p = await app(watch.redis, client, { heartbeatTtl: QUIET_HEARTBEAT_TTL });
    const op = await operator();
    let release = () => {};
    let finish = () => {};
    let running = 0;
    const held = p.guard.runWrite('acme', () => {
      running++;
      return new Promise<void>((r) => (release = r));
    });
    const short = p.guard.runWrite('acme', () => {
      running++;
      return new Promise<void>((r) => (finish = r));
    });
    await waitFor(() => running === 2, { what: 'both jobs admitted' });
    const draining = watch.nextBeat();
    // 3 s: ample for the beats (every 100 ms while draining) to report the short job gone.
    const waited = op.fence('acme', 3000).catch((e: unknown) => e);
    await draining; // the wait has begun and counts both jobs; the short one now finishes
    finish();
    const error = await waited;
    release();
    await Promise.all([held, short]);
    expect(error).toBeInstanceOf(FenceTimeoutError);
    expect((error as FenceTimeoutError).pending).toEqual([
      expect.objectContaining({ pid: process.pid, inflightHere: 1 }),
    ]);
    expect((error as Error).message).toMatch(/: 1 write\(s\) in flight$/);
  });

  it('does not let an acknowledgement for a wait from before the fence hash was lost satisfy a later wait', async () => {
    const client = await connectClient(server.port);
    const p = await app(client, client);
    const op = await operator();
    await op.fence('acme'); // epoch 1, acknowledged
    /** Reopens acme and starts a job on it that runs until the returned function is called. */
    const heldJob = async () => {
      await op.store.delete('acme');
      await waitFor(async () => !(await p.guard.isReadOnly('acme')), { what: 'acme reopened' });
      let release = () => {};
      let running = false;
      const job = p.guard.runWrite('acme', () => {
        running = true;
        return new Promise<void>((resolve) => (release = resolve));
      });
      await waitFor(() => running, { what: 'the job admitted' });
      return async () => {
        release();
        await job;
      };
    };

    const first = await heldJob();
    await op.store.enable('acme');
    const waited = op.store.wait('acme', { timeout: 1500 }).catch((e: unknown) => e); // epoch 2
    await waitFor(async () => (await client.hget('nsro:fence:acme', 'epoch')) === '2', {
      what: 'the wait for epoch 2 to begin',
    });
    // The fence hash is lost (evicted under maxmemory, say) while the process drains for epoch 2.
    await client.del('nsro:fence:acme');
    await first(); // the process may now acknowledge epoch 2: a counter that no longer exists
    expect(await waited).toBeInstanceOf(FenceTimeoutError);

    // A new wait starts the counter again, at 1: an acknowledgement of 2 would satisfy it.
    const second = await heldJob();
    const error = await op.fence('acme', 1000).catch((e: unknown) => e);
    await second();
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
  it('stops beating when its store closes, even while it drains for a wait that cannot end', async () => {
    // Only intervals are faked (the heartbeat and the faster beat while draining): Redis I/O,
    // the wait's polling and setImmediate stay real. Advancing the fake clock then fires every
    // beat a stopped member would still send, at once, with no wall-clock wait.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    cleanups.push(() => {
      vi.useRealTimers();
    });
    const client = await connectClient(server.port);
    const beats: string[] = [];
    const redis = new Proxy(client, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'eval') {
          return (...args: Parameters<Redis['eval']>) => {
            if (args[0] === HEARTBEAT_SCRIPT) beats.push(String(args[3]));
            return target.eval(...args);
          };
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    // 'off': no canary timer, and no announcement (`nsro ps`), so the only timers are the fence's.
    const store = new RedisStateStore({
      redis,
      heartbeatTtl: 1000,
      timeout: 10_000,
      keyspaceEvents: 'off',
      announce: false,
    });
    const guard = namespaceReadOnly({ store, fence: true });
    cleanups.push(() => store.close());
    await store.ready();
    await waitFor(async () => (await client.keys('nsro:proc:*')).length === 1, {
      what: 'registration',
    });
    let finish = () => {};
    const job = guard.runWrite('acme', () => new Promise<void>((resolve) => (finish = resolve)));
    const op = await operator();
    await op.store.enable('acme');
    const waited = op.store.wait('acme', { timeout: 5000 }).catch((e: unknown) => e);
    // The heartbeat's interval, and the drain's: the process is draining for the wait.
    await waitFor(() => vi.getTimerCount() === 2, { what: 'the drain to begin' });

    await guard.close(); // the last guard: the member stops
    expect(await client.keys('nsro:proc:*')).toEqual([]);
    beats.length = 0;
    vi.advanceTimersByTime(10_000); // 100 drain beats and 40 heartbeats, were any still set
    expect(beats).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);

    finish();
    await job;
    // Stopped, it neither registers again nor acknowledges: the wait ends without it.
    expect(await waited).toMatchObject({ namespace: 'acme', processes: [] });
    expect(await client.keys('nsro:proc:*')).toEqual([]);
  });
});
