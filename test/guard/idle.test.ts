import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  MemoryStateStore,
  type NamespaceState,
  namespaceReadOnly,
  type StateStore,
} from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * Invisible when idle: a write whose target the guard cannot tell is refused only while
 * something is in maintenance. With nothing in maintenance every write reaches the application,
 * whatever its path; with anything in maintenance, a write the guard cannot attribute is refused.
 */

type Method = 'POST' | 'PUT' | 'DELETE';

/**
 * Writes whose namespace the guard cannot tell (no `resolveId`), as the client sends them, with
 * the reason (and detail) of their refusal while something is in maintenance.
 */
const UNKNOWABLE: [method: Method, path: string, reason: string, detail: string][] = [
  ['POST', '/api/v4/projects/123/issues', 'unresolvable-id', 'no resolveId option'],
  ['PUT', '/api/v4/groups/42', 'unresolvable-id', 'no resolveId option'],
  ['POST', '/caf%C3%A9/x', 'invalid-namespace', 'invalid-character'], // `/café/x`
  // The root is `other`, but a decoded `/../` anywhere may be resolved by whatever joins paths.
  ['POST', '/other/proj/-/wikis/a%2F..%2Fb', 'invalid-namespace', 'dot-segment'],
  ['POST', '/acme%ZZ/x', 'invalid-namespace', 'undecodable'],
  ['POST', '/%2e%2e/x', 'invalid-namespace', 'dot-segment'],
  ['DELETE', '/api/v4/namespaces/7', 'unresolvable-id', 'no resolveId option'],
];

const send = (app: Parameters<typeof request>[0], method: Method, path: string) =>
  new request.Test(app, method, path);

describe.each(expressVersions)('invisible when idle ($name)', ({ express }) => {
  it('with an empty MemoryStateStore no write is refused: each reaches the handler', async () => {
    const { logger, warned } = recordingLogger();
    const { app, handled } = guardedApp(express, { logger, store: new MemoryStateStore() });
    for (const [method, path] of UNKNOWABLE) {
      const res = await send(app, method, path);
      expect(res.status, `${method} ${path}`).toBe(200);
      expect(res.headers['x-namespace-read-only']).toBeUndefined();
      expect(res.body).toEqual({ handled: true });
    }
    expect(handled).toEqual(UNKNOWABLE.map(([method, url]) => ({ method, url })));
    expect(warned()).toEqual([]);
  });

  it.each(UNKNOWABLE)(
    'with acme in maintenance, %s %s is refused 503 (%s, %s)',
    async (method, path, reason, detail) => {
      const { logger, of, warned } = recordingLogger();
      const { app, store, handled } = guardedApp(express, { logger });
      await store.set('acme', 'maintenance');
      const res = await send(app, method, path);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('?');
      expect(handled).toEqual([]);
      // One line per request, at `info`: a client (a scanner) sends these, not a misconfiguration.
      expect(of('info')).toHaveLength(1);
      expect(of('info')[0]?.object).toMatchObject({ reason, namespace: null });
      expect(of('info')[0]?.object.detail).toBe(detail);
      expect(warned()).toEqual([]);
    },
  );

  it('refuses again as soon as something is in maintenance, and stops once it ends', async () => {
    const [method, path] = ['POST', '/acme%ZZ/x'] as const;
    const { app, store, handled } = guardedApp(express);
    expect((await send(app, method, path)).status).toBe(200);
    await store.set('*', 'maintenance');
    expect((await send(app, method, path)).status).toBe(503);
    await store.set('*', 'active');
    expect((await send(app, method, path)).status).toBe(200);
    await store.set('other', 'maintenance');
    expect((await send(app, method, path)).status).toBe(503);
    await store.delete('other');
    expect((await send(app, method, path)).status).toBe(200);
    expect(handled).toHaveLength(3);
  });
});

/** A store over a MemoryStateStore whose `anyClosed` the test chooses (absent by default). */
function customStore(anyClosed?: StateStore['anyClosed']): {
  store: StateStore;
  inner: MemoryStateStore;
} {
  const inner = new MemoryStateStore();
  const store: StateStore = {
    get: (namespace: string): Promise<NamespaceState | null> => inner.get(namespace),
    set: (namespace, state, options) => inner.set(namespace, state, options),
    delete: (namespace) => inner.delete(namespace),
    ...(anyClosed !== undefined && { anyClosed }),
  };
  return { store, inner };
}

describe('stores that cannot say whether anything is closed', () => {
  const [method, path] = ['POST', '/acme%ZZ/x'] as const;
  const { express } = expressVersions[0];

  it('a custom store without anyClosed counts as "something may be in maintenance"', async () => {
    const { store } = customStore();
    const { app, handled } = guardedApp(express, { store });
    const res = await send(app, method, path);
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('?');
    expect(handled).toEqual([]);
    // A write it can attribute is decided by its namespace's state as always.
    expect((await send(app, 'POST', '/acme/x')).status).toBe(200);
  });

  it('anyClosed() answering undefined refuses; false admits; true refuses', async () => {
    for (const [answer, status] of [
      [undefined, 503],
      [false, 200],
      [true, 503],
    ] as const) {
      const { store } = customStore(() => answer);
      const { app } = guardedApp(express, { store });
      expect((await send(app, method, path)).status, String(answer)).toBe(status);
    }
  });

  it('a promised answer is awaited: false admits, true and undefined refuse', async () => {
    for (const [answer, status] of [
      [false, 200],
      [true, 503],
      [undefined, 503],
    ] as const) {
      const { store } = customStore(() => Promise.resolve(answer));
      const { app } = guardedApp(express, { store });
      expect((await send(app, method, path)).status, String(answer)).toBe(status);
    }
  });

  it('a promise that does not settle within the timeout counts as "may be"', async () => {
    const { store } = customStore(() => new Promise<boolean>(() => undefined));
    const { app, handled } = guardedApp(express, { store, timeout: 50 });
    const res = await send(app, method, path);
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('?');
    expect(handled).toEqual([]);
  });

  it('a rejected promise counts as "may be", and is never an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      const { store } = customStore(() => Promise.reject(new Error('store down')));
      const { app, handled } = guardedApp(express, { store });
      // A write it can attribute asks anyClosed() too (the idle shortcut), then its own state.
      expect((await send(app, 'POST', '/acme/x')).status).toBe(200);
      const res = await send(app, method, path);
      expect(res.status).toBe(503);
      expect(handled).toHaveLength(1);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
    }
  });
});

describe('the construction warning about resolveId', () => {
  const WARNING = { setup: true, option: 'resolveId' };

  it('is logged once, as a setup entry, with the default routes and no resolveId', async () => {
    const { logger, setup, warned } = recordingLogger();
    const { app } = guardedApp(expressVersions[0].express, { logger });
    expect(setup()).toHaveLength(1);
    expect(setup()[0]).toMatchObject({ level: 'warn', object: WARNING });
    expect(setup()[0]?.message).toMatch(/resolveId/);
    // Not repeated by requests, and not counted among what requests caused.
    await send(app, 'POST', '/api/v4/projects/1/issues');
    await send(app, 'POST', '/api/v4/projects/2/issues');
    expect(setup()).toHaveLength(1);
    expect(warned()).toEqual([]);
  });

  it('is logged once per guard created', () => {
    const { logger, setup } = recordingLogger();
    namespaceReadOnly({ logger, store: new MemoryStateStore() });
    namespaceReadOnly({ logger, store: new MemoryStateStore() });
    expect(setup()).toHaveLength(2);
  });

  it('is not logged when resolveId is given', () => {
    const { logger, entries } = recordingLogger();
    namespaceReadOnly({ logger, resolveId: () => null });
    expect(entries).toEqual([]);
  });

  it('is not logged with pattern routes, which name no numeric ids', () => {
    const { logger, entries } = recordingLogger();
    namespaceReadOnly({ logger, routes: ['/t/:namespace{/*rest}'] });
    expect(entries).toEqual([]);
  });
});
