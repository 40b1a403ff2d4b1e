import { once } from 'node:events';
import type { Server } from 'node:http';
import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type NamespaceReadOnlyMiddleware,
  namespaceReadOnly,
  RedisStateStore,
} from '../../src/index.js';
import { keyspaceCovered } from '../../src/stores/redis/subscriber.js';
import { type RedisServer, stopAll, waitFor } from '../helpers/redis.js';
import {
  connectSentinelClient,
  info,
  type SentinelGroup,
  startSentinelGroup,
} from '../helpers/sentinel.js';

/**
 * A real Sentinel failover on loopback (issue 10, "Done when"): one master (keyspace
 * notifications on), one replica (off), one Sentinel. Two guarded apps, each on its own ioredis
 * client that finds the master through the Sentinel, stand for two processes of a fleet. The
 * master is SIGKILLed and the replica promoted; then
 *  (a) nothing is admitted to `acme`, in maintenance before the failover: not during the
 *      failover window (requests are fired at both apps throughout), not after;
 *  (b) a `redis-cli SET` on the new master is obeyed by both apps (the time from the SET to each
 *      app's first 503 is measured and printed, not asserted);
 *  (c) a `redis-cli DEL` on the new master makes `acme` writable again in both apps.
 *
 * And (d): every process re-proves its push path on the promoted server, which starts without
 * keyspace notifications: the store (`keyspaceEvents: 'enable'`, the default) turns them on
 * there, its canary comes back, it is `complete` again, and a plain `redis-cli SET` reaches both
 * processes by push.
 */

const WRITE = (ns: string) => `/${ns}/proj/issues`;

interface Process {
  readonly name: string;
  readonly client: Redis;
  readonly store: RedisStateStore;
  readonly guard: NamespaceReadOnlyMiddleware;
  readonly server: Server;
  /** Per namespace, how many times the write handler ran. */
  readonly calls: Map<string, number>;
  post(ns: string): Promise<number>;
}

/** One "process" of the fleet: its own Sentinel-backed client, store, guard and HTTP server. */
async function startProcess(name: string, group: SentinelGroup): Promise<Process> {
  // The name marks its connections (the subscriber's copies it) in the server's CLIENT LIST.
  const client = await connectSentinelClient(group, { connectionName: connectionName(name) });
  const store = new RedisStateStore({
    redis: client,
    keyspaceEvents: 'enable',
    canaryInterval: 200,
  });
  const guard = namespaceReadOnly({ store });
  const calls = new Map<string, number>();
  const app = express();
  app.use(guard);
  app.post('/:ns/proj/issues', (req, res) => {
    const ns = String(req.params.ns);
    calls.set(ns, (calls.get(ns) ?? 0) + 1);
    res.json({ created: true });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    name,
    client,
    store,
    guard,
    server,
    calls,
    post: async (ns) => (await request(server).post(WRITE(ns)).send({ title: 't' })).status,
  };
}

function connectionName(name: string): string {
  return `nsro-${name.replace(/\W+/g, '-')}`;
}

async function stopProcess(p: Process): Promise<void> {
  await p.guard.close();
  await p.store.close();
  await new Promise((resolve) => p.server.close(resolve));
  p.client.disconnect();
}

/** Polls `p` with writes to `ns` until one is answered `status`; resolves with the ms it took. */
async function firstAnswer(p: Process, ns: string, status: number, from: number): Promise<number> {
  await waitFor(async () => (await p.post(ns)) === status, {
    timeout: 15_000,
    interval: 5,
    what: `${p.name} to answer ${status} to POST ${WRITE(ns)}`,
  });
  return Date.now() - from;
}

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason);
};

describe('Sentinel failover: one master, one replica, one Sentinel, two processes', () => {
  let group: SentinelGroup;
  let processes: Process[] = [];
  /** The promoted replica, once the failover test has run. */
  let promoted: RedisServer | null = null;

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    group = await startSentinelGroup();
    processes = [await startProcess('app A', group), await startProcess('app B', group)];
    for (const p of processes) {
      expect(await p.store.ready()).toMatchObject({ subscribed: true, mode: 'complete' });
    }
  });

  afterEach(() => {
    expect(unhandled, 'unhandled rejections').toEqual([]);
  });

  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    for (const p of processes) await stopProcess(p);
    await group?.stop();
    await stopAll();
  });

  it('before the failover, both processes refuse acme (in maintenance) and admit beta', async () => {
    expect(await group.master.cli('set', 'nsro:state:acme', 'maintenance')).toBe('OK');
    // Replicated before anything fails: the replica to be promoted must hold it. Checked on the
    // replica itself: a `redis-cli WAIT` would be a new connection with no write of its own to
    // wait for, and answers at once (and Redis 7 holds the command stream back until the
    // replica's first ACK after a diskless sync, up to a second after the link is up).
    await waitFor(
      async () => (await group.replica.cli('get', 'nsro:state:acme')) === 'maintenance',
      {
        timeout: 10_000,
        interval: 10,
        what: 'acme to reach the replica',
      },
    );

    for (const p of processes) {
      expect(await p.post('acme'), `${p.name}: acme`).toBe(503);
      expect(await p.post('beta'), `${p.name}: beta`).toBe(200);
      expect(p.calls.get('acme'), `${p.name}: acme handler calls`).toBeUndefined();
      expect(p.calls.get('beta')).toBe(1);
    }
  });

  it('after the failover every process follows the new master: acme never admitted, a redis-cli SET obeyed, a DEL lifts it', async () => {
    // (a) Requests at both apps, all through the failover window, until (b) is over.
    const acmeAnswers = new Map<string, number[]>(processes.map((p) => [p.name, []]));
    let firing = true;
    const traffic: Promise<unknown> = Promise.all(
      processes.map(async (p) => {
        const answers = acmeAnswers.get(p.name) as number[];
        while (firing) {
          const [acme] = await Promise.all([p.post('acme'), p.post('beta')]);
          answers.push(acme);
        }
      }),
    );
    // Its failure is reported where it is awaited, not as an unhandled rejection meanwhile.
    traffic.catch(() => undefined);
    try {
      await waitFor(() => [...acmeAnswers.values()].every((a) => a.length >= 5), {
        timeout: 10_000,
        what: 'traffic on both apps before the kill',
      });

      const killed = Date.now();
      await group.killMaster();
      // Following: a command on each process's client succeeds again. The old master is dead
      // and ioredis refuses a server that reports role:slave, so only the promoted one can
      // answer. Then the subscriber listens again. Timed from the kill, alongside the promotion.
      const followed: Record<string, number> = {};
      const resubscribed: Record<string, number> = {};
      const following = Promise.all(
        processes.map(async (p) => {
          await waitFor(async () => (await p.client.ping()) === 'PONG', {
            timeout: 20_000,
            interval: 10,
            what: `${p.name}'s client to reach the new master`,
          });
          followed[p.name] = Date.now() - killed;
          await waitFor(() => p.store.status().subscribed, {
            timeout: 20_000,
            interval: 10,
            what: `${p.name}'s subscriber to listen again`,
          });
          resubscribed[p.name] = Date.now() - killed;
        }),
      );
      following.catch(() => undefined);
      promoted = await group.waitForPromotion();
      const promotion = Date.now() - killed;
      expect((await group.masterAddress()).port).toBe(group.replica.port);
      await following;

      // Each process's connections, the subscriber's included, are on the promoted server.
      const clientList = await promoted.cli('client', 'list');
      for (const p of processes) {
        const mine = clientList
          .split('\n')
          .filter((line) => line.includes(` name=${connectionName(p.name)} `));
        expect(mine.length, `${p.name}'s connections on the new master`).toBeGreaterThanOrEqual(2);
        expect(
          mine.some((line) => / cmd=p?subscribe /.test(line) || / psub=[1-9]/.test(line)),
        ).toBe(true);
      }

      // (b) gamma is cached as writable in both processes first, so the SET has to reach them.
      for (const p of processes) await firstAnswer(p, 'gamma', 200, Date.now());
      expect(await promoted.cli('set', 'nsro:state:gamma', 'maintenance')).toBe('OK');
      const set = Date.now();
      const obeyed = await Promise.all(processes.map((p) => firstAnswer(p, 'gamma', 503, set)));

      firing = false;
      await traffic;

      console.log(
        `sentinel failover: kill -> promotion ${promotion} ms; kill -> client follows ` +
          `${JSON.stringify(followed)} ms; kill -> subscriber listening ` +
          `${JSON.stringify(resubscribed)} ms; SET on new master -> first 503 ` +
          `${processes.map((p, i) => `${p.name} ${obeyed[i]} ms`).join(', ')} ` +
          `(measured, not asserted); acme requests ` +
          `during the run: ${[...acmeAnswers.values()].map((a) => a.length).join(' + ')}`,
      );

      // (a) Every answer for acme was a refusal, and its handler never ran.
      for (const p of processes) {
        const answers = acmeAnswers.get(p.name) as number[];
        expect(answers.length).toBeGreaterThan(5);
        expect(new Set(answers), `${p.name}: statuses for acme`).toEqual(new Set([503]));
        expect(p.calls.get('acme'), `${p.name}: acme handler calls`).toBeUndefined();
      }

      // (c) DEL on the new master: acme is writable again in both processes.
      expect(await promoted.cli('del', 'nsro:state:acme')).toBe('1');
      const deleted = Date.now();
      const lifted = await Promise.all(processes.map((p) => firstAnswer(p, 'acme', 200, deleted)));
      console.log(
        `sentinel failover: DEL on new master -> acme writable ` +
          `${processes.map((p, i) => `${p.name} ${lifted[i]} ms`).join(', ')} (not asserted)`,
      );
      for (const p of processes) expect(p.calls.get('acme')).toBe(1);
    } finally {
      firing = false;
      await traffic;
    }
  });

  it('the push path is re-proven on the promoted master (notifications enabled there, a plain SET pushed to both processes)', async () => {
    await pushPathReproven();
  });

  /**
   * After the failover, with `keyspaceEvents: 'enable'`: the promoted server emits keyspace
   * events, and a `redis-cli SET` there reaches both stores by push. No request is made after
   * the SET, so only a push can change what `peek` returns (a TTL expiry makes it `undefined`,
   * never `maintenance`).
   */
  async function pushPathReproven(): Promise<void> {
    const server = promoted;
    if (server === null) throw new Error('the failover test did not run');
    const flags = (await server.cli('config', 'get', 'notify-keyspace-events')).split('\n')[1];
    expect(keyspaceCovered(flags ?? ''), `notify-keyspace-events is '${flags}'`).toBe(true);
    expect((await info(server, 'replication')).get('role')).toBe('master');
    for (const p of processes) {
      await waitFor(() => p.store.status().mode === 'complete', {
        timeout: 10_000,
        what: `${p.name} complete again`,
      });
    }

    for (const p of processes) {
      expect(await p.store.get('delta')).toBeNull();
      expect(p.store.peek('delta')).toBeNull();
    }
    expect(await server.cli('set', 'nsro:state:delta', 'maintenance')).toBe('OK');
    const set = Date.now();
    for (const p of processes) {
      await waitFor(() => p.store.peek('delta')?.state === 'maintenance', {
        timeout: 5000,
        interval: 2,
        what: `${p.name} to hear of the SET by push`,
      });
    }
    console.log(`sentinel failover: push after failover reached both in ${Date.now() - set} ms`);
  }
});
