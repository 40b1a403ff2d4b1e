import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  MemoryStateStore,
  NamespaceReadOnlyError,
  type NamespaceState,
  namespaceReadOnly,
  OptionsError,
  type StateChange,
  type StateInput,
  type StateStore,
} from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/** A store that counts `get` calls per key and has no `peek`, so every lookup is a real one. */
class CountingStore implements StateStore {
  readonly inner = new MemoryStateStore();
  readonly gets: string[] = [];

  get(namespace: string): Promise<NamespaceState | null> {
    this.gets.push(namespace);
    return this.inner.get(namespace);
  }
  set(namespace: string, state: StateInput): Promise<void> {
    return this.inner.set(namespace, state);
  }
  delete(namespace: string): Promise<void> {
    return this.inner.delete(namespace);
  }
  count(key: string): number {
    return this.gets.filter((k) => k === key).length;
  }
}

describe('MemoryStateStore', () => {
  let store: MemoryStateStore;
  beforeEach(() => {
    store = new MemoryStateStore();
  });

  it('returns null for a namespace with no state', async () => {
    expect(await store.get('acme')).toBeNull();
    expect(await store.get('*')).toBeNull();
  });

  it("set('acme', 'maintenance') reads back as maintenance", async () => {
    await store.set('acme', 'maintenance');
    expect(await store.get('acme')).toEqual({ state: 'maintenance' });
  });

  it("set('acme', 'active') reads back as active", async () => {
    await store.set('acme', 'active');
    expect(await store.get('acme')).toEqual({ state: 'active' });
  });

  it('keeps message, until (a Date) and reason', async () => {
    const until = new Date(Date.now() + 600_000);
    await store.set('acme', {
      state: 'maintenance',
      message: 'Moving to a new region',
      until,
      reason: 'migration',
    });
    const got = await store.get('acme');
    expect(got).toEqual({
      state: 'maintenance',
      message: 'Moving to a new region',
      until,
      reason: 'migration',
    });
    expect(got?.until).toBeInstanceOf(Date);
  });

  it('turns an ISO until string into a Date', async () => {
    await store.set('acme', { state: 'maintenance', until: '2026-12-01T10:00:00Z' });
    const got = await store.get('acme');
    expect(got?.until).toBeInstanceOf(Date);
    expect(got?.until?.toISOString()).toBe('2026-12-01T10:00:00.000Z');
  });

  it('drops empty optional fields rather than storing them', async () => {
    await store.set('acme', { state: 'maintenance', message: '' });
    expect(await store.get('acme')).toEqual({ state: 'maintenance' });
  });

  it('replaces a state on a second set', async () => {
    await store.set('acme', { state: 'maintenance', message: 'first' });
    await store.set('acme', 'active');
    expect(await store.get('acme')).toEqual({ state: 'active' });
  });

  it('delete makes the namespace stateless again', async () => {
    await store.set('acme', 'maintenance');
    await store.delete('acme');
    expect(await store.get('acme')).toBeNull();
  });

  describe('anyClosed()', () => {
    it('is false for an empty store', () => {
      expect(store.anyClosed()).toBe(false);
    });

    it('is true while a namespace or the instance is in maintenance, false once it ends', async () => {
      for (const key of ['acme', '*']) {
        await store.set(key, 'maintenance');
        expect(store.anyClosed()).toBe(true);
        await store.delete(key);
        expect(store.anyClosed()).toBe(false);
        await store.set(key, { state: 'maintenance', message: 'm' });
        expect(store.anyClosed()).toBe(true);
        await store.set(key, 'active');
        expect(store.anyClosed()).toBe(false);
      }
    });

    it("counts an unrecognised value ('maintenence') as closed, and 'active' as open", async () => {
      await store.set('acme', 'active');
      await store.set('*', 'active');
      expect(store.anyClosed()).toBe(false);
      await store.set('beta', 'maintenence');
      expect(store.anyClosed()).toBe(true);
    });

    it('stays true while any of several is closed', async () => {
      await store.set('acme', 'maintenance');
      await store.set('beta', 'maintenance');
      await store.delete('acme');
      expect(store.anyClosed()).toBe(true);
      await store.set('beta', 'active');
      expect(store.anyClosed()).toBe(false);
    });

    it('follows a state replaced by one with or without a TTL, and set twice', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        await store.set('acme', 'maintenance');
        await store.set('acme', 'maintenance');
        await store.set('acme', 'maintenance', { ttl: 1000 });
        expect(store.anyClosed()).toBe(true);
        vi.advanceTimersByTime(1000);
        // The state without a TTL was replaced, not kept beside the one that ran out.
        expect(store.anyClosed()).toBe(false);
        await store.set('acme', 'frozen', { ttl: 1000 });
        await store.set('acme', 'frozen');
        vi.advanceTimersByTime(5000);
        expect(store.anyClosed()).toBe(true);
        await store.delete('acme');
        expect(store.anyClosed()).toBe(false);
      } finally {
        vi.useRealTimers();
      }
    });

    it('is false once a state with a TTL has expired', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        await store.set('acme', 'maintenance', { ttl: 1000 });
        expect(store.anyClosed()).toBe(true);
        vi.advanceTimersByTime(999);
        expect(store.anyClosed()).toBe(true);
        vi.advanceTimersByTime(1);
        expect(store.anyClosed()).toBe(false);
        expect(await store.get('acme')).toBeNull();
      } finally {
        vi.useRealTimers();
      }
    });
  });

  describe('onStateChange()', () => {
    it('fires after set and delete (via local), with the states before and after', async () => {
      const changes: StateChange[] = [];
      store.onStateChange((change) => changes.push(change));
      await store.set('Acme/Team', 'maintenance', { actor: 'alice', reason: 'why' });
      await store.set('acme', { state: 'maintenance', message: 'Moving' });
      await store.delete('acme', { actor: 'bob' });
      expect(changes).toEqual([
        { namespace: 'acme', from: null, to: { state: 'maintenance' }, via: 'local' },
        {
          namespace: 'acme',
          from: { state: 'maintenance' },
          to: { state: 'maintenance', message: 'Moving' },
          via: 'local',
        },
        {
          namespace: 'acme',
          from: { state: 'maintenance', message: 'Moving' },
          to: null,
          via: 'local',
        },
      ]);
    });

    it('does not fire when nothing changed: the same state again, or a delete of nothing', async () => {
      const listener = vi.fn();
      await store.set('acme', 'maintenance');
      store.onStateChange(listener);
      await store.set('acme', 'maintenance');
      await store.delete('nobody');
      expect(listener).not.toHaveBeenCalled();
    });

    it('fires when a ttl runs out, as a read finds it (via ttl)', async () => {
      vi.useFakeTimers();
      try {
        const listener = vi.fn();
        await store.set('acme', 'maintenance', { ttl: 1000 });
        store.onStateChange(listener);
        vi.advanceTimersByTime(1000);
        expect(store.peek('acme')).toBeNull();
        expect(listener).toHaveBeenCalledTimes(1);
        expect(listener.mock.calls[0]?.[0]).toMatchObject({
          namespace: 'acme',
          from: { state: 'maintenance' },
          to: null,
          via: 'ttl',
        });
      } finally {
        vi.useRealTimers();
      }
    });

    it('a listener that throws or rejects breaks nothing and is logged; unsubscribing stops calls', async () => {
      const log = recordingLogger();
      const logged = new MemoryStateStore({ logger: log.logger });
      const later = vi.fn();
      logged.onStateChange(() => {
        throw new Error('bug');
      });
      logged.onStateChange(() => Promise.reject(new Error('async bug')));
      const off = logged.onStateChange(later);
      await logged.set('acme', 'maintenance');
      expect(await logged.get('acme')).toEqual({ state: 'maintenance' });
      expect(later).toHaveBeenCalledTimes(1);
      await new Promise((resolve) => setTimeout(resolve, 0));
      expect(log.of('error')[0]?.message).toContain('onStateChange listener failed');
      off();
      await logged.delete('acme');
      expect(later).toHaveBeenCalledTimes(1);
      expect(await logged.get('acme')).toBeNull();
    });

    it('warns of an unrecognised value once, when it is set, as the Redis store does', async () => {
      const log = recordingLogger();
      const logged = new MemoryStateStore({ logger: log.logger });
      await logged.set('acme', 'maintenence');
      await logged.set('acme', 'maintenence');
      await logged.set('beta', 'maintenance');
      expect(log.warned()).toEqual([
        {
          level: 'warn',
          object: { namespace: 'acme', value: 'maintenence' },
          message: 'namespace-read-only: unrecognised state value; treated as maintenance',
        },
      ]);
      expect(await logged.get('acme')).toMatchObject({ state: 'maintenance' });
      // `logger: false`: nothing, anywhere.
      await new MemoryStateStore({ logger: false }).set('acme', 'maintenence');
    });

    it('checks actor, reason and its own options', async () => {
      await expect(store.set('acme', 'maintenance', { actor: '' })).rejects.toThrow(TypeError);
      await expect(store.delete('acme', { reason: 5 as never })).rejects.toThrow(TypeError);
      expect(() => store.onStateChange('nope' as never)).toThrow(TypeError);
      expect(() => new MemoryStateStore({ logger: {} as never })).toThrow(OptionsError);
    });
  });

  describe('list() and clear()', () => {
    it('list() gives every namespace with a state, active included, sorted, keys normalised', async () => {
      expect(await store.list()).toEqual([]);
      const until = new Date('2030-01-01T00:00:00Z');
      await store.set('zeta', 'active');
      await store.set('Acme/Team', { state: 'maintenance', message: 'Moving', until });
      await store.set('*', 'frozen');
      await store.set('beta', 'maintenence');
      expect(await store.list()).toEqual([
        { namespace: '*', state: { state: 'frozen' } },
        { namespace: 'acme', state: { state: 'maintenance', message: 'Moving', until } },
        { namespace: 'beta', state: { state: 'maintenance', unrecognized: 'maintenence' } },
        { namespace: 'zeta', state: { state: 'active' } },
      ]);
      await store.delete('acme');
      expect((await store.list()).map((e) => e.namespace)).toEqual(['*', 'beta', 'zeta']);
    });

    it('list() leaves out a state whose ttl ran out, and reports it gone (via ttl)', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        await store.set('acme', 'maintenance', { ttl: 1000 });
        await store.set('beta', 'maintenance');
        const changes: StateChange[] = [];
        store.onStateChange((change) => changes.push(change));
        vi.advanceTimersByTime(1000);
        expect(await store.list()).toEqual([
          { namespace: 'beta', state: { state: 'maintenance' } },
        ]);
        expect(changes).toMatchObject([{ namespace: 'acme', to: null, via: 'ttl' }]);
      } finally {
        vi.useRealTimers();
      }
    });

    it('clear() removes every state and tells a listener of each, as delete does', async () => {
      await store.set('acme', 'maintenance');
      await store.set('*', { state: 'frozen', reason: 'backup' });
      await store.set('beta', 'active');
      const changes: StateChange[] = [];
      store.onStateChange((change) => changes.push(change));
      await store.clear({ actor: 'test' });
      expect(await store.list()).toEqual([]);
      for (const key of ['acme', '*', 'beta']) expect(await store.get(key)).toBeNull();
      expect(changes).toEqual([
        { namespace: '*', from: { state: 'frozen', reason: 'backup' }, to: null, via: 'local' },
        { namespace: 'acme', from: { state: 'maintenance' }, to: null, via: 'local' },
        { namespace: 'beta', from: { state: 'active' }, to: null, via: 'local' },
      ]);
      // Nothing left to remove: no call.
      await store.clear();
      expect(changes).toHaveLength(3);
    });

    it('clear() resets anyClosed() and anyFrozen(), with and without a ttl, and they follow later sets', async () => {
      await store.set('acme', 'maintenance');
      await store.set('beta', 'frozen');
      await store.set('gamma', 'maintenance', { ttl: 60_000 });
      await store.set('*', 'frozen', { ttl: 60_000 });
      expect(store.anyClosed()).toBe(true);
      expect(store.anyFrozen()).toBe(true);
      await store.clear();
      expect(store.anyClosed()).toBe(false);
      expect(store.anyFrozen()).toBe(false);
      expect(store.observe().inMaintenance).toBe(0);

      await store.set('acme', 'maintenance');
      expect(store.anyClosed()).toBe(true);
      await store.delete('acme');
      expect(store.anyClosed()).toBe(false);
    });

    it('clear() opens the guard that reads the store', async () => {
      const { app } = guardedApp(expressVersions[0].express, { store });
      await store.set('acme', 'maintenance');
      await store.set('*', 'maintenance');
      expect((await request(app).post('/beta/proj/-/issues')).status).toBe(503);
      await store.clear();
      expect((await request(app).post('/acme/proj/-/issues')).status).toBe(200);
    });

    it('clear() keeps the counters right when a listener sets a state during it', async () => {
      await store.set('acme', 'maintenance');
      await store.set('beta', 'maintenance');
      store.onStateChange(({ namespace, to }) => {
        // Reacting to acme's removal: a new key, and one the loop has still to clear.
        if (namespace === 'acme' && to === null) {
          void store.set('zeta', 'frozen');
          void store.set('beta', { state: 'maintenance', message: 'again' });
        }
      });
      await store.clear();
      expect(await store.list()).toEqual([{ namespace: 'zeta', state: { state: 'frozen' } }]);
      expect(store.anyClosed()).toBe(true);
      expect(store.anyFrozen()).toBe(true);
      await store.delete('zeta');
      expect(store.anyClosed()).toBe(false);
      expect(store.anyFrozen()).toBe(false);
    });

    it('clear() checks actor and reason as delete does', async () => {
      await store.set('acme', 'maintenance');
      await expect(store.clear({ actor: '' })).rejects.toThrow(TypeError);
      expect(await store.get('acme')).toEqual({ state: 'maintenance' });
    });
  });

  it('delete of a namespace with no state is a no-op', async () => {
    await expect(store.delete('nobody')).resolves.toBeUndefined();
  });

  it('normalises keys to the lower-cased root namespace', async () => {
    await store.set('Acme/Team', 'maintenance');
    expect(await store.get('acme')).toEqual({ state: 'maintenance' });
    expect(await store.get('ACME')).toEqual({ state: 'maintenance' });
    expect(await store.get('acme/other/project')).toEqual({ state: 'maintenance' });
    expect(store.peek('acme')).toEqual({ state: 'maintenance' });
    // `team` is not a key of its own.
    expect(await store.get('team')).toBeNull();
    await store.delete('ACME/whatever');
    expect(await store.get('acme')).toBeNull();
  });

  it("keeps '*' (the instance) apart from every namespace", async () => {
    await store.set('*', 'maintenance');
    expect(await store.get('*')).toEqual({ state: 'maintenance' });
    expect(await store.get('acme')).toBeNull();
    await store.delete('*');
    expect(await store.get('*')).toBeNull();
  });

  it('keeps namespaces that share a prefix apart', async () => {
    await store.set('acme', 'maintenance');
    expect(await store.get('acme-corp')).toBeNull();
    expect(await store.get('acmex')).toBeNull();
  });

  it('returns a state the caller cannot change', async () => {
    const input = { state: 'maintenance' as const, message: 'original' };
    await store.set('acme', input);
    input.message = 'changed afterwards';
    const got = await store.get('acme');
    expect(got?.message).toBe('original');
    expect(Object.isFrozen(got)).toBe(true);
  });

  it('keeps its own copy of until: changing the Date passed to set changes nothing', async () => {
    const until = new Date('2030-01-01T00:00:00Z');
    await store.set('acme', { state: 'maintenance', until });
    until.setTime(0);
    expect((await store.get('acme'))?.until?.toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });

  it.each([
    ['an empty name', ''],
    ['a leading slash', '/acme'],
    ['a space', 'ac me'],
    ['a dot segment', '..'],
    ['a percent sign', 'ac%41me'],
    ['a semicolon', 'acme;x'],
    ['a backslash', 'acme\\x'],
    ['non-ASCII', 'äcme'],
    ['a control character', 'acme\n'],
    ['an over-long name', 'a'.repeat(256)],
  ])('rejects %s with a TypeError (get, set, delete)', async (_, name) => {
    await expect(store.get(name)).rejects.toThrow(TypeError);
    await expect(store.set(name, 'maintenance')).rejects.toThrow(TypeError);
    await expect(store.delete(name)).rejects.toThrow(TypeError);
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['a number', 42],
    ['an object', {}],
  ])('rejects a name that is %s with a TypeError', async (_, name) => {
    await expect(store.get(name as unknown as string)).rejects.toThrow(TypeError);
    await expect(store.set(name as unknown as string, 'maintenance')).rejects.toThrow(TypeError);
  });

  it('rejects a state object it cannot understand with a TypeError and keeps the old state', async () => {
    await store.set('acme', 'active');
    for (const bad of [
      { state: 'maintainance' },
      { message: 'no state' },
      null,
      42,
      { state: 'maintenance', until: 'not a date' },
      { state: 'maintenance', until: new Date(Number.NaN) },
    ]) {
      await expect(store.set('acme', bad as unknown as StateInput)).rejects.toThrow(TypeError);
    }
    expect(await store.get('acme')).toEqual({ state: 'active' });
  });

  it("reads an unknown string ('maintenence') back as maintenance, flagged unrecognized", async () => {
    await store.set('acme', 'maintenence');
    expect(await store.get('acme')).toEqual({ state: 'maintenance', unrecognized: 'maintenence' });
  });

  it('reads a JSON string as an operator would type it into redis-cli', async () => {
    await store.set(
      'acme',
      '{"state":"maintenance","message":"Migrating","until":"2026-12-01T10:00:00Z"}',
    );
    expect(await store.get('acme')).toEqual({
      state: 'maintenance',
      message: 'Migrating',
      until: new Date('2026-12-01T10:00:00Z'),
    });
  });

  it('reads a JSON string with an unknown state as maintenance', async () => {
    await store.set('acme', '{"state":"paused"}');
    const got = await store.get('acme');
    expect(got?.state).toBe('maintenance');
    expect(got?.unrecognized).toBe('"paused"');
  });
});

describe.each(expressVersions)('store states through the guard ($name)', ({ express }) => {
  it("blocks a write to a namespace whose value is a typo ('maintenence') and warns once", async () => {
    const { logger, of, warned } = recordingLogger();
    const store = new MemoryStateStore({ logger });
    await store.set('acme', 'maintenence');
    const { app, handled } = guardedApp(express, { store, logger });
    const res = await request(app).post('/acme/project/-/issues');
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('acme');
    expect((await request(app).put('/acme/project')).status).toBe(503);
    expect(handled).toEqual([]);
    // The store warns of the value once, when it is set; each refusal is an `info` line.
    const warnings = warned();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.object).toEqual({ namespace: 'acme', value: 'maintenence' });
    expect(warnings[0]?.message).toMatch(/unrecognised state value/);
    expect(of('info')).toHaveLength(2);
    expect(of('info')[0]?.object).toMatchObject({
      namespace: 'acme',
      method: 'POST',
      path: '/acme/project/-/issues',
      reason: 'unrecognized-state',
      value: 'maintenence',
    });
  });

  it('treats an unknown instance value as instance maintenance', async () => {
    const { logger, of, warned } = recordingLogger();
    const store = new MemoryStateStore({ logger });
    await store.set('*', 'on');
    await store.set('*', 'on');
    const { app, handled } = guardedApp(express, { store, logger });
    const res = await request(app).post('/anyone/x');
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('*');
    expect(handled).toEqual([]);
    // Setting the same value again is no news: still one warning.
    expect(warned()).toHaveLength(1);
    expect(warned()[0]?.object).toEqual({ namespace: '*', value: 'on' });
    expect(of('info')[0]?.object).toMatchObject({
      namespace: '*',
      reason: 'unrecognized-state',
      value: 'on',
    });
  });

  // Another namespace is in maintenance, so the guard reads the state rather than stepping
  // aside because nothing at all is closed.
  it("lets writes through to a namespace explicitly set 'active' (another in maintenance)", async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'active');
    await store.set('other', 'maintenance');
    const { logger, warned } = recordingLogger();
    const { app, handled } = guardedApp(express, { store, logger });
    const res = await request(app).post('/acme/x');
    expect(res.status).toBe(200);
    expect(handled).toEqual([{ method: 'POST', url: '/acme/x' }]);
    expect(warned()).toEqual([]);
  });

  it("lets writes through to an instance explicitly set 'active' (another namespace in maintenance)", async () => {
    const store = new MemoryStateStore();
    await store.set('*', 'active');
    await store.set('other', 'maintenance');
    const { app } = guardedApp(express, { store });
    expect((await request(app).post('/acme/x')).status).toBe(200);
    expect((await request(app).post('/users/foo')).status).toBe(200);
  });

  it("does not let a namespace's 'active' override instance maintenance", async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'active');
    await store.set('*', 'maintenance');
    const { app, handled } = guardedApp(express, { store });
    const res = await request(app).post('/acme/x');
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('*');
    expect(handled).toEqual([]);
  });

  it('opens writes again after delete, and closes them after set, without a restart', async () => {
    const store = new MemoryStateStore();
    const { app } = guardedApp(express, { store });
    expect((await request(app).post('/acme/x')).status).toBe(200);
    await store.set('Acme', 'maintenance');
    expect((await request(app).post('/acme/x')).status).toBe(503);
    await store.delete('acme');
    expect((await request(app).post('/acme/x')).status).toBe(200);
  });
});

describe.each(expressVersions)('the per-request memo ($name)', ({ express }) => {
  /**
   * An app whose handler asks the guard again (as a GraphQL resolver or a service layer would),
   * several times, for the request's namespace and others.
   */
  function appWithChecks(store: CountingStore) {
    const guard = namespaceReadOnly({ store });
    const answers: unknown[] = [];
    const app = express();
    app.use(guard);
    app.use((req: IncomingMessage, res: ServerResponse, next: (e?: unknown) => void) => {
      (async () => {
        answers.length = 0;
        answers.push(await guard.isReadOnly('acme', req));
        answers.push(await guard.isReadOnly('Acme/Team', req));
        answers.push(await guard.isReadOnly('acme', req));
        for (let i = 0; i < 2; i++) {
          try {
            await guard.assertWritable('acme', req);
            answers.push('writable');
          } catch (error) {
            answers.push(error instanceof NamespaceReadOnlyError ? error.namespace : error);
          }
        }
        answers.push(await guard.isReadOnly('*', req));
        answers.push(await guard.isReadOnly('other', req));
        answers.push(await guard.isReadOnly('OTHER', req));
        res.end('ok');
      })().catch(next);
    });
    return { app, guard, answers };
  }

  it('reads each key once per request across the guard and later checks (write)', async () => {
    const store = new CountingStore();
    const { app, answers } = appWithChecks(store);
    const res = await request(app).post('/acme/x');
    expect(res.status).toBe(200);
    expect(answers).toEqual([false, false, false, 'writable', 'writable', false, false, false]);
    expect(store.count('acme')).toBe(1);
    expect(store.count('*')).toBe(1);
    expect(store.count('other')).toBe(1);
    expect(store.gets).toHaveLength(3);
  });

  it('reads each key once per request when only the checks ask (read in maintenance)', async () => {
    const store = new CountingStore();
    await store.set('acme', { state: 'maintenance', message: 'm' });
    const { app, answers } = appWithChecks(store);
    // A GET passes the guard without a lookup; the handler's checks then read each key once.
    const res = await request(app).get('/acme/x');
    expect(res.status).toBe(200);
    expect(answers).toEqual([true, true, true, 'acme', 'acme', false, false, false]);
    expect(store.count('acme')).toBe(1);
    expect(store.count('*')).toBe(1);
    expect(store.count('other')).toBe(1);
  });

  it('does not share the memo between two requests', async () => {
    const store = new CountingStore();
    const { app, answers } = appWithChecks(store);
    expect((await request(app).post('/acme/x')).status).toBe(200);
    expect(answers[0]).toBe(false);
    // A state change between requests is seen by the next request.
    await store.set('acme', 'maintenance');
    expect((await request(app).post('/acme/x')).status).toBe(503);
    expect((await request(app).get('/acme/x')).status).toBe(200);
    expect(answers[0]).toBe(true);
    expect(store.count('acme')).toBe(3);
    expect(store.count('*')).toBe(3);
  });

  it('keeps one answer for the whole request even if the state changes mid-request', async () => {
    const store = new CountingStore();
    const guard = namespaceReadOnly({ store });
    const seen: boolean[] = [];
    const app = express();
    app.use(guard);
    app.use((req: IncomingMessage, res: ServerResponse, next: (e?: unknown) => void) => {
      (async () => {
        await store.set('acme', 'maintenance');
        seen.push(await guard.isReadOnly('acme', req)); // memoised: the guard saw it writable
        seen.push(await guard.isReadOnly('acme')); // no request: a fresh lookup
        res.end('ok');
      })().catch(next);
    });
    expect((await request(app).post('/acme/x')).status).toBe(200);
    expect(seen).toEqual([false, true]);
  });

  it('does not memoise checks made without a request', async () => {
    const store = new CountingStore();
    const guard = namespaceReadOnly({ store });
    expect(await guard.isReadOnly('acme')).toBe(false);
    await store.set('acme', 'maintenance');
    expect(await guard.isReadOnly('acme')).toBe(true);
    await expect(guard.assertWritable('acme')).rejects.toBeInstanceOf(NamespaceReadOnlyError);
    expect(store.count('acme')).toBe(3);
  });
});
