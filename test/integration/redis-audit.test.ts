import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type NamespaceState,
  OptionsError,
  RedisStateStore,
  type StateChange,
  StateValueError,
} from '../../src/index.js';
import { recordingLogger } from '../helpers/logger.js';
import {
  connectClient,
  type RedisServer,
  sleep,
  startRedis,
  stopAll,
  waitFor,
} from '../helpers/redis.js';

/**
 * The audit stream `<prefix>audit` and the `onStateChange` hook, against a real redis-server
 * that starts with keyspace notifications off: the stores turn them on themselves
 * (`keyspaceEvents: 'enable'`, the default), as they would on a stock server. Each test uses its
 * own prefix, so that nothing one test writes reaches another's stores.
 */

let server: RedisServer;
let seq = 0;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  await stopAll();
});

/** A store on its own client, as one process of a fleet would have. */
async function processOn(options: Partial<ConstructorParameters<typeof RedisStateStore>[0]> = {}) {
  const client = await connectClient(server.port);
  const store = new RedisStateStore({ redis: client, ...options });
  const close = async () => {
    await store.close();
    client.disconnect();
  };
  return { client, store, close };
}

function freshPrefix(): string {
  return `audit${++seq}-${process.pid}:`;
}

/** The raw fields of every entry, oldest first. */
async function entries(client: Redis, prefix: string): Promise<Record<string, string>[]> {
  return (await client.xrange(`${prefix}audit`, '-', '+')).map(([, fields]) => {
    const record: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) {
      record[fields[i] as string] = fields[i + 1] as string;
    }
    return record;
  });
}

/** Every change a store reports, as `[namespace, from, to, via]` with states by their `state`. */
function recorder() {
  const changes: StateChange[] = [];
  const brief = (s: NamespaceState | null) =>
    s === null ? null : s.message === undefined ? s.state : `${s.state}: ${s.message}`;
  return {
    changes,
    listener: (change: StateChange) => {
      changes.push(change);
    },
    brief: () => changes.map((c) => [c.namespace, brief(c.from), brief(c.to), c.via]),
  };
}

describe('the audit stream', () => {
  it('set, enable and delete append namespace, from, to, actor, reason and time, in order', async () => {
    const prefix = freshPrefix();
    const { client, store, close } = await processOn({ prefix, subscribe: false });
    try {
      const before = Date.now();
      await store.set('Acme/Team', 'maintenance', { actor: 'alice', reason: 'disk full' });
      await store.set('acme', { state: 'maintenance', message: 'Moving', reason: 'migration' });
      await store.enable('acme', { message: 'Still moving', actor: 'bob', ttl: 60_000 });
      await store.delete('acme', { actor: 'carol', reason: 'done' });
      await store.delete('acme', { actor: 'dave' }); // nothing to delete: no change, no entry
      await store.set('*', 'active');

      const json = { state: 'maintenance', message: 'Moving', reason: 'migration' };
      const list = await entries(client, prefix);
      expect(list.map(({ time: _t, ...rest }) => rest)).toEqual([
        { namespace: 'acme', from: '', to: 'maintenance', actor: 'alice', reason: 'disk full' },
        {
          namespace: 'acme',
          from: 'maintenance',
          to: JSON.stringify(json),
          actor: `store@${hostname()}:${process.pid}`,
          // The state's own reason.
          reason: 'migration',
        },
        {
          namespace: 'acme',
          from: JSON.stringify(json),
          to: expect.stringMatching(/^\{"state":"maintenance","message":"Still moving","until":"/),
          actor: 'bob',
          reason: '',
        },
        {
          namespace: 'acme',
          from: expect.stringContaining('Still moving'),
          to: '',
          actor: 'carol',
          reason: 'done',
        },
        {
          namespace: '*',
          from: '',
          to: 'active',
          actor: `store@${hostname()}:${process.pid}`,
          reason: '',
        },
      ]);
      for (const { time } of list) {
        expect(new Date(time as string).toISOString()).toBe(time);
        expect(Date.parse(time as string)).toBeGreaterThanOrEqual(before);
        expect(Date.parse(time as string)).toBeLessThanOrEqual(Date.now());
      }

      // The keys the change is about are exactly as before: the value, its TTL, the index.
      await store.set('beta', 'maintenance', { ttl: 5000 });
      expect(await server.cli('get', `${prefix}state:beta`)).toBe('maintenance');
      expect(Number(await server.cli('pttl', `${prefix}state:beta`))).toBeGreaterThan(0);
      expect((await server.cli('smembers', `${prefix}index`)).split('\n').sort()).toEqual([
        '*',
        'beta',
      ]);

      // audit(): newest first, filtered by any spelling of a namespace, limited.
      const audit = await store.audit({ namespace: 'ACME/x', limit: 2 });
      expect(
        audit.map((e) => [e.namespace, e.to === null ? null : e.to.slice(0, 12), e.actor]),
      ).toEqual([
        ['acme', null, 'carol'],
        ['acme', '{"state":"ma', 'bob'],
      ]);
      expect(audit[0]).toMatchObject({
        from: expect.stringContaining('Still moving'),
        reason: 'done',
      });
      expect(audit[0]?.id).toMatch(/^\d+-\d+$/);
      expect((await store.audit()).map((e) => e.namespace)).toEqual([
        'beta',
        '*',
        'acme',
        'acme',
        'acme',
        'acme',
      ]);
      expect(await store.audit({ namespace: 'nobody' })).toEqual([]);
      await expect(store.audit({ limit: 0 })).rejects.toThrow(OptionsError);
    } finally {
      await close();
    }
  });

  it('announces every change on <prefix>changes, as before', async () => {
    const prefix = freshPrefix();
    const { store, close } = await processOn({ prefix, subscribe: false });
    const listener = await connectClient(server.port);
    const heard: string[] = [];
    listener.on('message', (_channel: string, message: string) => heard.push(message));
    await listener.subscribe(`${prefix}changes`);
    try {
      await store.set('acme', 'maintenance');
      await store.delete('acme');
      await store.delete('acme');
      await waitFor(() => heard.length === 3, { what: 'three announcements' });
      expect(heard).toEqual(['acme', 'acme', 'acme']);
    } finally {
      listener.disconnect();
      await close();
    }
  });

  it('checks actor and reason like a state, before writing anything', async () => {
    const prefix = freshPrefix();
    const { client, store, close } = await processOn({ prefix, subscribe: false });
    try {
      await expect(store.set('acme', 'maintenance', { actor: '' })).rejects.toThrow(
        StateValueError,
      );
      await expect(store.delete('acme', { actor: 42 as never })).rejects.toThrow(StateValueError);
      await expect(store.enable('acme', { actor: ' ' })).rejects.toThrow(StateValueError);
      await expect(store.set('acme', 'maintenance', { reason: {} as never })).rejects.toThrow(
        StateValueError,
      );
      expect(await client.exists(`${prefix}state:acme`, `${prefix}audit`)).toBe(0);
    } finally {
      await close();
    }
  });

  it('is capped at auditMax entries, approximately (MAXLEN ~), keeping the newest', async () => {
    const prefix = freshPrefix();
    const { client, store, close } = await processOn({ prefix, subscribe: false, auditMax: 10 });
    try {
      const N = 250;
      for (let i = 0; i < N; i++) {
        await store.set('acme', { state: 'maintenance', message: `step ${i}` });
      }
      // Redis trims whole nodes of `stream-node-max-entries` (100) entries with `~`.
      const node = Number(
        (await server.cli('config', 'get', 'stream-node-max-entries')).split('\n')[1],
      );
      const length = Number(await client.xlen(`${prefix}audit`));
      console.log(
        `audit stream: ${length} entries kept of ${N} with auditMax 10 (node size ${node})`,
      );
      expect(length).toBeGreaterThanOrEqual(10);
      expect(length).toBeLessThanOrEqual(10 + node);
      expect(length).toBeLessThan(N);
      const newest = await store.audit({ limit: 10 });
      expect(newest.map((e) => JSON.parse(e.to ?? '{}').message)).toEqual(
        Array.from({ length: 10 }, (_, i) => `step ${N - 1 - i}`),
      );
      // Each entry's `from` is the value the entry before it wrote.
      expect(newest.slice(0, -1).map((e) => e.from)).toEqual(newest.slice(1).map((e) => e.to));
    } finally {
      await close();
    }
  });

  it('auditMax: 0 writes no entry, and the change still happens', async () => {
    const prefix = freshPrefix();
    const { client, store, close } = await processOn({ prefix, subscribe: false, auditMax: 0 });
    try {
      await store.set('acme', 'maintenance');
      await store.delete('acme');
      await store.set('acme', 'maintenance');
      expect(await client.get(`${prefix}state:acme`)).toBe('maintenance');
      expect(await client.exists(`${prefix}audit`)).toBe(0);
      expect(await store.audit()).toEqual([]);
    } finally {
      await close();
    }
  });

  it('lastChanges: the newest entry of each namespace, in one pass that stops once all are found', async () => {
    const prefix = freshPrefix();
    const { client, store, close } = await processOn({ prefix, subscribe: false, announce: false });
    try {
      await store.enable('acme', { reason: 'first' });
      await store.enable('beta', { reason: 'old' });
      // Enough newer entries of another namespace to take more than one page (1,000).
      for (let i = 0; i < 1100; i += 100) {
        const multi = client.multi();
        for (let j = 0; j < 100; j++) {
          multi.xadd(`${prefix}audit`, '*', 'namespace', 'noise', 'from', '', 'to', 'maintenance');
        }
        await multi.exec();
      }
      await store.enable('acme', { reason: 'second' });
      const latest = await store.lastChanges(['Acme/Team', 'beta', 'gamma', 'acme']);
      expect([...latest.keys()].sort()).toEqual(['acme', 'beta']);
      expect(latest.get('acme')?.reason).toBe('second');
      expect(latest.get('beta')?.reason).toBe('old');
      expect((await store.lastChanges([])).size).toBe(0);
    } finally {
      await close();
    }
  });
});

describe('onStateChange', () => {
  it('fires in every process for a plain redis-cli change (complete mode), once per change', async () => {
    const prefix = freshPrefix();
    const a = await processOn({ prefix });
    const b = await processOn({ prefix });
    const writer = await processOn({ prefix, subscribe: false });
    const ra = recorder();
    const rb = recorder();
    const rw = recorder();
    try {
      // A state set before the processes start is found by the first load: not a change.
      await server.cli('set', `${prefix}state:old`, 'maintenance');
      a.store.onStateChange(ra.listener);
      b.store.onStateChange(rb.listener);
      for (const { store } of [a, b]) {
        expect(await store.ready()).toMatchObject({ mode: 'complete' });
      }
      expect(await server.cli('config', 'get', 'notify-keyspace-events')).toContain('K');

      await server.cli('set', `${prefix}state:acme`, 'maintenance');
      const both = (n: number) => () => ra.changes.length >= n && rb.changes.length >= n;
      await waitFor(both(1), { what: 'both processes to hear the SET' });
      for (const r of [ra, rb]) expect(r.brief()).toEqual([['acme', null, 'maintenance', 'push']]);

      // The same value again, and an announcement of an unchanged namespace: no change.
      await server.cli('set', `${prefix}state:acme`, 'maintenance');
      await server.cli('publish', `${prefix}changes`, 'acme');
      await server.cli('publish', `${prefix}changes`, 'old');
      // A change to another namespace, to know both processes are past the re-reads.
      await server.cli('set', `${prefix}state:zulu`, 'active');
      await waitFor(both(2), { what: 'the second change' });
      await sleep(100);
      for (const r of [ra, rb]) {
        expect(r.brief()).toEqual([
          ['acme', null, 'maintenance', 'push'],
          ['zulu', null, 'active', 'push'],
        ]);
      }

      // A change through a store: 'push' in the others, 'local' in the process that made it.
      writer.store.onStateChange(rw.listener);
      await writer.store.set('acme', { state: 'maintenance', message: 'Moving' });
      expect(rw.brief()).toEqual([['acme', 'maintenance', 'maintenance: Moving', 'local']]);
      await waitFor(both(3), { what: 'the store change' });
      await server.cli('del', `${prefix}state:acme`);
      await waitFor(both(4), { what: 'the DEL' });
      await sleep(100);
      for (const r of [ra, rb]) {
        expect(r.brief().slice(2)).toEqual([
          ['acme', 'maintenance', 'maintenance: Moving', 'push'],
          ['acme', 'maintenance: Moving', null, 'push'],
        ]);
      }
      expect(rw.changes).toHaveLength(1); // the writer does not read: it hears only its own
    } finally {
      await Promise.all([a.close(), b.close(), writer.close()]);
    }
  });

  it('the process that makes a change hears it once, whichever way it learns of it', async () => {
    const prefix = freshPrefix();
    const p = await processOn({ prefix });
    const r = recorder();
    try {
      p.store.onStateChange(r.listener);
      expect(await p.store.ready()).toMatchObject({ mode: 'complete' });
      await p.store.enable('acme', { ttl: 60_000 });
      await p.store.set('acme', 'active');
      await p.store.delete('acme');
      await sleep(200); // the pushes of its own changes come back: no second report
      expect(r.brief()).toEqual([
        ['acme', null, 'maintenance', 'local'],
        ['acme', 'maintenance', 'active', 'local'],
        ['acme', 'active', null, 'local'],
      ]);
      expect(r.changes[0]?.to?.expiresAt).toBeInstanceOf(Date);
    } finally {
      await p.close();
    }
  });

  it('a change push never delivered is reported by the load that regains complete knowledge', async () => {
    const prefix = freshPrefix();
    const p = await processOn({ prefix, canaryInterval: 100 });
    const r = recorder();
    try {
      p.store.onStateChange(r.listener);
      expect(await p.store.ready()).toMatchObject({ mode: 'complete' });
      // Notifications off and the change, atomically: no notification can carry it. (The store
      // announces nothing either: this is a plain SET.)
      await p.client
        .multi()
        .config('SET', 'notify-keyspace-events', '')
        .set(`${prefix}state:acme`, 'maintenance')
        .exec();
      // The canary goes unanswered, the store degrades, turns notifications back on, proves
      // push and loads every state.
      await waitFor(() => r.changes.length > 0, { timeout: 10_000, what: 'the reload' });
      expect(r.brief()).toEqual([['acme', null, 'maintenance', 'load']]);
      await waitFor(() => p.store.status().mode === 'complete', { what: 'complete again' });
      await sleep(300); // more canaries and reloads: nothing new
      expect(r.changes).toHaveLength(1);
    } finally {
      await p.close();
    }
  });

  it("in the degraded mode (keyspaceEvents: 'off') it fires when the store next reads the key", async () => {
    const prefix = freshPrefix();
    const p = await processOn({ prefix, keyspaceEvents: 'off', ttl: 200 });
    const r = recorder();
    try {
      p.store.onStateChange(r.listener);
      expect(await p.store.ready()).toMatchObject({ mode: 'degraded', cause: 'not-configured' });
      expect(await p.store.get('acme')).toBeNull(); // read once: known to be writable

      await server.cli('set', `${prefix}state:acme`, 'maintenance');
      await sleep(300);
      expect(r.changes).toEqual([]); // nothing read yet, nothing learned
      expect(await p.store.get('acme')).toMatchObject({ state: 'maintenance' });
      expect(r.brief()).toEqual([['acme', null, 'maintenance', 'ttl']]);

      // Re-read after the TTL, unchanged: no event.
      await sleep(300);
      expect(await p.store.get('acme')).toMatchObject({ state: 'maintenance' });
      expect(r.changes).toHaveLength(1);

      // An announcement is still a push in this mode.
      await server.cli('set', `${prefix}state:acme`, 'active');
      await server.cli('publish', `${prefix}changes`, 'acme');
      await waitFor(() => r.changes.length === 2, { what: 'the announced change' });
      expect(r.brief()[1]).toEqual(['acme', 'maintenance', 'active', 'push']);

      // A namespace read for the first time is news, not a change.
      await server.cli('set', `${prefix}state:fresh`, 'maintenance');
      expect(await p.store.get('fresh')).toMatchObject({ state: 'maintenance' });
      expect(r.changes).toHaveLength(2);
    } finally {
      await p.close();
    }
  });

  it('a listener that throws or rejects is logged and never breaks reads or other listeners', async () => {
    const prefix = freshPrefix();
    const log = recordingLogger();
    const p = await processOn({ prefix, logger: log.logger });
    const r = recorder();
    let unhandled = 0;
    const onUnhandled = () => {
      unhandled++;
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      p.store.onStateChange(() => {
        throw new Error('listener bug');
      });
      p.store.onStateChange(async () => {
        throw new Error('async listener bug');
      });
      const off = p.store.onStateChange(r.listener);
      expect(await p.store.ready()).toMatchObject({ mode: 'complete' });

      await server.cli('set', `${prefix}state:acme`, 'maintenance');
      await waitFor(() => r.changes.length === 1, { what: 'the change' });
      expect(p.store.peek('acme')).toMatchObject({ state: 'maintenance' });
      expect(await p.store.get('acme')).toMatchObject({ state: 'maintenance' });
      await p.store.set('acme', 'active'); // a local change with the same listeners
      expect(await p.store.get('acme')).toMatchObject({ state: 'active' });
      await sleep(50);
      expect(unhandled).toBe(0);
      const errors = log.of('error').filter((e) => e.message?.includes('onStateChange'));
      expect(errors.length).toBeGreaterThanOrEqual(1); // rate-limited: one line per 10 s
      expect(errors[0]?.object).toMatchObject({ namespace: 'acme' });

      // Unsubscribed: no more calls.
      off();
      await server.cli('del', `${prefix}state:acme`);
      await waitFor(() => p.store.peek('acme') === null, { what: 'the DEL' });
      expect(r.changes).toHaveLength(2);
      expect(p.store.status()).toMatchObject({ mode: 'complete' });
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await p.close();
    }
  });
});
