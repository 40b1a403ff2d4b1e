import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MemoryStateStore,
  NamespaceNameError,
  NamespaceReadOnlyError,
  type NamespaceState,
  namespaceReadOnly,
  type StateInput,
  type StateStore,
} from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/** A store whose `get` fails: asynchronously (a rejected promise) or by throwing at once. */
function failingStore(mode: 'rejects' | 'throws', error = new Error('connection refused')) {
  const calls: string[] = [];
  const store: StateStore = {
    get(namespace: string): Promise<NamespaceState | null> {
      calls.push(namespace);
      if (mode === 'throws') throw error;
      return Promise.reject(error);
    },
    set: async () => {},
    delete: async () => {},
  };
  return { store, calls };
}

/** A MemoryStateStore without `peek`, so the guard has to take its asynchronous path. */
function asyncStore() {
  const inner = new MemoryStateStore();
  const store: StateStore = {
    get: (namespace) => inner.get(namespace),
    set: (namespace: string, state: StateInput) => inner.set(namespace, state),
    delete: (namespace) => inner.delete(namespace),
  };
  return store;
}

const storeKinds = [
  { kind: 'memory (synchronous peek)', make: () => new MemoryStateStore() as StateStore },
  { kind: 'asynchronous get only', make: asyncStore },
];

describe.each(expressVersions)('instance scope ($name)', ({ express }) => {
  describe.each(storeKinds)('$kind', ({ make }) => {
    async function instanceInMaintenance() {
      const store = make();
      await store.set('*', 'maintenance');
      return guardedApp(express, { store });
    }

    it.each([
      ['POST', '/acme/x'],
      ['POST', '/users/foo'],
      ['POST', '/'],
      ['PUT', '/groups/acme/-/edit'],
      ['DELETE', '/api/v4/projects/acme%2Fproj'],
      ['PATCH', '/-/profile'],
      ['POST', '/users/sign_up'],
      ['POST', '/nonexistent/path/that/no/router/knows'],
    ])('blocks %s %s', async (method, path) => {
      const { app, handled } = await instanceInMaintenance();
      const agent = request(app) as unknown as Record<string, (p: string) => request.Test>;
      const res = await agent[method.toLowerCase()]?.call(agent, path);
      expect(res?.status).toBe(503);
      expect(res?.headers['x-namespace-read-only']).toBe('*');
      expect(handled).toEqual([]);
    });

    it.each([
      ['POST', '/users/sign_in'],
      ['POST', '/users/sign_out'],
      ['POST', '/oauth/token'],
      ['POST', '/api/v4/internal/allowed'],
    ])('lets the allowlisted %s %s through', async (method, path) => {
      const { app, handled } = await instanceInMaintenance();
      const res = await request(app).post(path);
      expect(res.status).toBe(200);
      expect(handled).toEqual([{ method, url: path }]);
    });

    it('does not let a look-alike of an allowlisted route through', async () => {
      const { app, handled } = await instanceInMaintenance();
      for (const path of ['/users/sign_in/extra', '/x/users/sign_in', '/users/sign_in.json']) {
        expect((await request(app).post(path)).status).toBe(503);
      }
      expect(handled).toEqual([]);
    });

    it('lets reads through', async () => {
      const { app, handled } = await instanceInMaintenance();
      expect((await request(app).get('/acme/x')).status).toBe(200);
      expect((await request(app).head('/users/foo')).status).toBe(200);
      expect((await request(app).options('/')).status).toBe(200);
      expect(handled.map((h) => h.method)).toEqual(['GET', 'HEAD', 'OPTIONS']);
    });

    it('opens every write again once the instance state is deleted', async () => {
      const { app, store } = await instanceInMaintenance();
      await store.delete('*');
      expect((await request(app).post('/acme/x')).status).toBe(200);
      expect((await request(app).post('/')).status).toBe(200);
    });
  });
});

describe.each(expressVersions)('namespace scope ($name)', ({ express }) => {
  describe.each(storeKinds)('$kind', ({ make }) => {
    async function acmeInMaintenance() {
      const store = make();
      await store.set('acme', 'maintenance');
      return guardedApp(express, { store });
    }

    it.each([
      '/acme',
      '/acme/',
      '/ACME/x',
      '/acme/team/sub/project/-/issues',
      '/acme/project.git/git-receive-pack',
      '/groups/acme/-/edit',
      '/groups/Acme/team',
      '/api/v4/groups/acme',
      '/api/v4/projects/acme%2Fproj/issues',
      '/api/v4/projects/ACME%2Fproj/merge_requests',
    ])('blocks a write to %s', async (path) => {
      const { app, handled } = await acmeInMaintenance();
      const res = await request(app).post(path);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it.each([
      '/acme-corp/x',
      '/acmex/x',
      '/acm/x',
      '/other/acme',
      '/groups/acme-corp/-/edit',
      '/api/v4/projects/acmex%2Fproj/issues',
      '/users/foo',
      '/',
    ])('lets a write to %s through', async (path) => {
      const { app, handled } = await acmeInMaintenance();
      const res = await request(app).post(path);
      expect(res.status).toBe(200);
      expect(handled).toEqual([{ method: 'POST', url: path }]);
    });

    it('lets reads of the namespace through', async () => {
      const { app, handled } = await acmeInMaintenance();
      expect((await request(app).get('/acme/project')).status).toBe(200);
      expect(handled).toHaveLength(1);
    });

    it('lets the namespace-scoped allowlist through (git fetch)', async () => {
      const { app, handled } = await acmeInMaintenance();
      expect((await request(app).post('/acme/team/proj.git/git-upload-pack')).status).toBe(200);
      expect(handled).toHaveLength(1);
    });
  });
});

describe.each(expressVersions)('store errors ($name)', ({ express }) => {
  describe.each(['rejects', 'throws'] as const)('a store whose get %s', (mode) => {
    it("blocks the write with onStoreError 'closed' (the default) and logs the error", async () => {
      const { store } = failingStore(mode);
      const log = recordingLogger();
      const { app, handled } = guardedApp(express, { store, logger: log.logger });
      const res = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('900');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body.message).toMatch(/could not be read/);
      expect(handled).toEqual([]);
      const warnings = log.of('warn');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.object).toMatchObject({
        method: 'POST',
        path: '/acme/x',
        reason: 'store-unavailable',
      });
      expect(String(warnings[0]?.object.detail)).toContain('connection refused');
    });

    it("blocks with an explicit onStoreError 'closed'", async () => {
      const { store } = failingStore(mode);
      const { app, handled } = guardedApp(express, { store, onStoreError: 'closed' });
      expect((await request(app).put('/users/foo')).status).toBe(503);
      expect(handled).toEqual([]);
    });

    it("lets the write pass with onStoreError 'open' and logs an error", async () => {
      const failure = new Error('connection refused');
      const { store } = failingStore(mode, failure);
      const log = recordingLogger();
      const { app, handled } = guardedApp(express, {
        store,
        onStoreError: 'open',
        logger: log.logger,
      });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(200);
      expect(handled).toEqual([{ method: 'POST', url: '/acme/x' }]);
      const errors = log.of('error');
      expect(errors).toHaveLength(1);
      expect(errors[0]?.object).toMatchObject({ err: failure, method: 'POST', path: '/acme/x' });
      expect(log.of('warn')).toEqual([]);
    });

    it('still lets an allowlisted write through when failing closed', async () => {
      const { store } = failingStore(mode);
      const { app, handled } = guardedApp(express, { store });
      expect((await request(app).post('/users/sign_in')).status).toBe(200);
      expect(handled).toHaveLength(1);
    });

    it('never asks the store about reads', async () => {
      const { store, calls } = failingStore(mode);
      const { app, handled } = guardedApp(express, { store });
      expect((await request(app).get('/acme/x')).status).toBe(200);
      expect((await request(app).head('/acme/x')).status).toBe(200);
      expect((await request(app).options('/acme/x')).status).toBe(200);
      expect(handled).toHaveLength(3);
      expect(calls).toEqual([]);
    });
  });
});

describe('programmatic checks', () => {
  let store: MemoryStateStore;
  let guard: ReturnType<typeof namespaceReadOnly>;
  beforeEach(() => {
    store = new MemoryStateStore();
    guard = namespaceReadOnly({ store, retryAfter: 300 });
  });

  it('isReadOnly is false when nothing is in maintenance', async () => {
    expect(await guard.isReadOnly('acme')).toBe(false);
    expect(await guard.isReadOnly('*')).toBe(false);
    await expect(guard.assertWritable('acme')).resolves.toBeUndefined();
  });

  it('isReadOnly follows the namespace state, for any spelling of the namespace', async () => {
    await store.set('acme', 'maintenance');
    expect(await guard.isReadOnly('acme')).toBe(true);
    expect(await guard.isReadOnly('Acme/Team')).toBe(true);
    expect(await guard.isReadOnly('ACME/team/project')).toBe(true);
    expect(await guard.isReadOnly('acme-corp')).toBe(false);
    expect(await guard.isReadOnly('*')).toBe(false);
  });

  it("isReadOnly is false for a namespace explicitly 'active'", async () => {
    await store.set('acme', 'active');
    expect(await guard.isReadOnly('acme')).toBe(false);
  });

  it('isReadOnly treats an unrecognised value as maintenance', async () => {
    await store.set('acme', 'maintenence');
    expect(await guard.isReadOnly('acme')).toBe(true);
  });

  it("isReadOnly('*') follows the instance state", async () => {
    await store.set('*', 'maintenance');
    expect(await guard.isReadOnly('*')).toBe(true);
  });

  it('instance maintenance makes every namespace read-only', async () => {
    await store.set('*', { state: 'maintenance', message: 'Upgrading' });
    for (const namespace of ['acme', 'Other/Team', 'x']) {
      expect(await guard.isReadOnly(namespace)).toBe(true);
      const error = await guard.assertWritable(namespace).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(NamespaceReadOnlyError);
      expect(error).toMatchObject({ namespace: '*', status: 503, message: 'Upgrading' });
    }
  });

  it('assertWritable throws a NamespaceReadOnlyError carrying status, namespace, retryAfter, code', async () => {
    await store.set('acme', { state: 'maintenance', message: 'Moving' });
    const error = await guard.assertWritable('Acme/Team').then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NamespaceReadOnlyError);
    expect(error).toBeInstanceOf(Error);
    const e = error as NamespaceReadOnlyError;
    expect(e.status).toBe(503);
    expect(e.namespace).toBe('acme');
    expect(e.retryAfter).toBe(300);
    expect(e.code).toBe('ERR_NSRO_MAINTENANCE');
    expect(e.refusal).toBe('maintenance');
    expect(e.reason).toBeUndefined(); // the state carries none
    expect(e.name).toBe('NamespaceReadOnlyError');
    expect(e.message).toBe('Moving');
  });

  it('assertWritable takes retryAfter from until', async () => {
    await store.set('acme', { state: 'maintenance', until: new Date(Date.now() + 120_000) });
    const error = (await guard
      .assertWritable('acme')
      .catch((e: unknown) => e)) as NamespaceReadOnlyError;
    expect(error.retryAfter).toBeGreaterThan(100);
    expect(error.retryAfter).toBeLessThanOrEqual(120);
  });

  it('assertWritable uses the default message when the state has none', async () => {
    await store.set('acme', 'maintenance');
    await expect(guard.assertWritable('acme')).rejects.toThrow(/maintenance mode/);
  });

  it('rejects a name that is not a namespace with a TypeError, not a false answer', async () => {
    await expect(guard.isReadOnly('')).rejects.toThrow(NamespaceNameError);
    await expect(guard.isReadOnly('a b')).rejects.toThrow(TypeError);
    await expect(guard.assertWritable('/acme')).rejects.toMatchObject({
      code: 'ERR_NSRO_NAMESPACE_NAME',
    });
  });

  it('follows onStoreError when the state cannot be read: closed refuses, open passes', async () => {
    const closed = namespaceReadOnly({ store: failingStore('rejects').store });
    await expect(closed.isReadOnly('acme')).resolves.toBe(true);
    const refusal = await closed.assertWritable('acme').catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(NamespaceReadOnlyError);
    // Like the middleware's `X-Namespace-Read-Only: ?`: whether acme is closed is not known.
    expect(refusal).toMatchObject({
      status: 503,
      namespace: null,
      refusal: 'store-unavailable',
      code: 'ERR_NSRO_STORE_UNAVAILABLE',
    });

    const open = namespaceReadOnly({ store: failingStore('rejects').store, onStoreError: 'open' });
    await expect(open.isReadOnly('acme')).resolves.toBe(false);
    await expect(open.assertWritable('acme')).resolves.toBeUndefined();
  });

  it('exposes the store it reads', () => {
    expect(guard.store).toBe(store);
  });
});

describe('the middleware never returns a rejected promise', () => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => {
    rejections.push(reason);
  };
  beforeEach(() => {
    rejections.length = 0;
    process.on('unhandledRejection', onRejection);
  });
  afterEach(() => {
    process.off('unhandledRejection', onRejection);
  });

  function fakeExchange(method: string, url: string) {
    const headers: Record<string, string | number> = {};
    let ended: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const res = {
      statusCode: 200,
      headersSent: false,
      writableEnded: false,
      body: undefined as unknown,
      setHeader(name: string, value: string | number) {
        headers[name.toLowerCase()] = value;
        return this;
      },
      end(body?: unknown) {
        this.body = body;
        this.headersSent = true;
        this.writableEnded = true;
        ended();
        return this;
      },
    };
    const req = { method, url, originalUrl: url, headers: {} };
    return {
      req: req as unknown as IncomingMessage,
      res: res as unknown as ServerResponse,
      state: res,
      headers,
      done,
    };
  }

  /** Lets every pending promise job and an I/O turn run. */
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it.each(['rejects', 'throws'] as const)(
    "returns undefined and answers 503 when the store %s (onStoreError 'closed')",
    async (mode) => {
      const { store } = failingStore(mode);
      const guard = namespaceReadOnly({ store });
      const x = fakeExchange('POST', '/acme/x');
      const nexts: unknown[] = [];
      const returned = guard(x.req, x.res, (error) => {
        nexts.push(error);
      });
      expect(returned).toBeUndefined();
      await x.done;
      await settle();
      expect(x.state.statusCode).toBe(503);
      expect(x.headers['x-namespace-read-only']).toBe('?');
      expect(nexts).toEqual([]);
      expect(rejections).toEqual([]);
    },
  );

  it.each(['rejects', 'throws'] as const)(
    "returns undefined and calls next() once when the store %s (onStoreError 'open')",
    async (mode) => {
      const { store } = failingStore(mode);
      const guard = namespaceReadOnly({ store, onStoreError: 'open' });
      const x = fakeExchange('PUT', '/acme/x');
      let resolveNext: (args: unknown[]) => void = () => {};
      const nextCalled = new Promise<unknown[]>((resolve) => {
        resolveNext = resolve;
      });
      const returned = guard(x.req, x.res, (...args: unknown[]) => resolveNext(args));
      expect(returned).toBeUndefined();
      expect(await nextCalled).toEqual([]);
      await settle();
      expect(x.state.writableEnded).toBe(false);
      expect(rejections).toEqual([]);
    },
  );

  it('answers 503 and leaves no rejection when the logger throws after an asynchronous lookup', async () => {
    const store = asyncStore();
    await store.set('acme', 'maintenance');
    const boom = () => {
      throw new Error('log sink down');
    };
    const guard = namespaceReadOnly({
      store,
      logger: { warn: boom, info: boom, debug: boom, error: boom },
    });
    const x = fakeExchange('POST', '/acme/x');
    const nexts: unknown[] = [];
    expect(
      guard(x.req, x.res, (error) => {
        nexts.push(error);
      }),
    ).toBeUndefined();
    await x.done;
    await settle();
    expect(x.state.statusCode).toBe(503);
    expect(nexts).toEqual([]);
    expect(rejections).toEqual([]);
  });

  it('returns undefined on the synchronous path too', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const guard = namespaceReadOnly({ store });
    const x = fakeExchange('POST', '/acme/x');
    expect(guard(x.req, x.res, () => {})).toBeUndefined();
    // A cache hit answers before the call returns.
    expect(x.state.writableEnded).toBe(true);
    expect(x.state.statusCode).toBe(503);
  });
});

describe.each(expressVersions)('logging ($name)', ({ express }) => {
  it('logs one structured info line per write a maintenance blocks, and no warning', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', { state: 'maintenance', reason: 'migration' });
    const log = recordingLogger();
    const { app } = guardedApp(express, { store, logger: log.logger });
    await request(app).post('/acme/proj/-/issues?x=1');
    await request(app).delete('/Acme/proj');
    expect(log.of('warn')).toEqual([]);
    expect(log.of('info').map((e) => e.object)).toEqual([
      {
        namespace: 'acme',
        method: 'POST',
        path: '/acme/proj/-/issues',
        reason: 'maintenance',
        stateReason: 'migration',
      },
      {
        namespace: 'acme',
        method: 'DELETE',
        path: '/Acme/proj',
        reason: 'maintenance',
        stateReason: 'migration',
      },
    ]);
    expect(log.of('info').every((e) => typeof e.message === 'string')).toBe(true);
    expect(log.of('error')).toEqual([]);
  });

  it('logs instance maintenance with namespace * and its own reason', async () => {
    const store = new MemoryStateStore();
    await store.set('*', 'maintenance');
    const log = recordingLogger();
    const { app } = guardedApp(express, { store, logger: log.logger });
    await request(app).put('/users/foo');
    expect(log.of('info').map((e) => e.object)).toEqual([
      { namespace: '*', method: 'PUT', path: '/users/foo', reason: 'instance-maintenance' },
    ]);
  });

  it('logs nothing for reads and for writes that pass', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const log = recordingLogger();
    const { app } = guardedApp(express, { store, logger: log.logger });
    await request(app).get('/acme/x');
    await request(app).post('/other/x');
    expect(log.logged().filter((e) => e.level !== 'debug')).toEqual([]);
  });

  it('logs a debug line, not a warning, for an allowlisted write', async () => {
    const store = new MemoryStateStore();
    await store.set('*', 'maintenance');
    await store.set('acme', 'maintenance');
    const log = recordingLogger();
    const { app } = guardedApp(express, { store, logger: log.logger });
    expect((await request(app).post('/users/sign_in')).status).toBe(200);
    expect((await request(app).post('/acme/proj.git/git-upload-pack')).status).toBe(200);
    expect(log.of('warn')).toEqual([]);
    expect(log.of('debug').map((e) => e.object)).toEqual([
      { method: 'POST', path: '/users/sign_in', rule: 'POST /users/sign_in', namespace: '*' },
      {
        method: 'POST',
        path: '/acme/proj.git/git-upload-pack',
        rule: 'POST /*repo/:project.git/git-upload-pack',
        namespace: 'acme',
      },
    ]);
  });

  it('writes JSON lines through a pino logger with a destination stream', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        callback();
      },
    });
    const logger = pino({ level: 'debug' }, destination);
    const store = new MemoryStateStore({ logger });
    await store.set('*', 'maintenance');
    await store.set('acme', 'maintenence');
    const { app } = guardedApp(express, { store, logger });
    await request(app).post('/acme/x');
    await request(app).post('/users/sign_in');
    await request(app).get('/acme/x');
    await new Promise((resolve) => setImmediate(resolve));
    // The guard's one line about its configuration (no resolveId) goes through pino as well.
    expect(lines.filter((l) => l.setup === true)).toEqual([
      expect.objectContaining({ level: 40, setup: true, option: 'resolveId' }),
    ]);
    const requestLines = lines.filter((l) => l.setup !== true);
    expect(requestLines).toHaveLength(3);
    // The unrecognised value is the store's to warn of, once, when it learns it...
    expect(requestLines[0]).toMatchObject({
      level: 40,
      namespace: 'acme',
      value: 'maintenence',
      msg: 'namespace-read-only: unrecognised state value; treated as maintenance',
    });
    // ... and the write it refuses is one more expected refusal, at `info`.
    expect(requestLines[1]).toMatchObject({
      level: 30,
      namespace: 'acme',
      method: 'POST',
      path: '/acme/x',
      reason: 'unrecognized-state',
      value: 'maintenence',
      msg: 'namespace-read-only: write blocked',
    });
    expect(requestLines[2]).toMatchObject({
      level: 20,
      method: 'POST',
      path: '/users/sign_in',
      namespace: '*',
    });
  });

  describe.each(storeKinds)('a logger whose every method throws ($kind)', ({ make }) => {
    const boom = () => {
      throw new Error('log sink down');
    };
    const throwing = { warn: boom, info: boom, debug: boom, error: boom };

    it("leaves a blocked write the guard's 503, and the handler never runs", async () => {
      const store = make();
      await store.set('acme', 'maintenance');
      const { app, handled } = guardedApp(express, { store, logger: throwing });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it("leaves a refusal for an unknowable target (another namespace in maintenance) the guard's 503", async () => {
      const store = make();
      await store.set('other', 'maintenance');
      const { app, handled } = guardedApp(express, { store, logger: throwing });
      const res = await request(app).post('/api/v4/projects/123/issues');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('?');
      expect(handled).toEqual([]);
    });

    it('still admits an admitted write and an allowlisted one', async () => {
      const store = make();
      await store.set('acme', 'maintenance');
      const { app, handled } = guardedApp(express, { store, logger: throwing });
      expect((await request(app).post('/beta/x')).status).toBe(200);
      // Allowlisted writes are logged at debug, which throws here too.
      expect((await request(app).post('/acme/proj.git/git-upload-pack')).status).toBe(200);
      expect(handled.map((h) => h.url)).toEqual(['/beta/x', '/acme/proj.git/git-upload-pack']);
    });

    it('still admits a write under onStoreError: open when the store fails', async () => {
      const failing = {
        get: () => Promise.reject(new Error('store down')),
        set: async () => undefined,
        delete: async () => undefined,
      };
      const { app, handled } = guardedApp(express, {
        store: failing,
        logger: throwing,
        onStoreError: 'open',
      });
      expect((await request(app).post('/acme/x')).status).toBe(200);
      expect(handled).toHaveLength(1);
    });

    it("leaves a store failure under onStoreError: closed the guard's 503", async () => {
      const failing = {
        get: () => {
          throw new Error('store down');
        },
        set: async () => undefined,
        delete: async () => undefined,
      };
      const { app, handled } = guardedApp(express, { store: failing, logger: throwing });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
    });
  });

  it('is silent by default', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const writes: unknown[] = [];
    const original = process.stdout.write;
    process.stdout.write = ((chunk: unknown) => {
      writes.push(chunk);
      return true;
    }) as typeof process.stdout.write;
    try {
      const { app } = guardedApp(express, { store });
      expect((await request(app).post('/acme/x')).status).toBe(503);
    } finally {
      process.stdout.write = original;
    }
    expect(writes.filter((w) => String(w).includes('namespace-read-only'))).toEqual([]);
  });
});

describe('logging while the store fails', () => {
  it('does not flood: 10,000 writes refused for a store error log one line', async () => {
    const lines: { level: string; fields: Record<string, unknown> }[] = [];
    const record =
      (level: string) =>
      (fields: object): void => {
        lines.push({ level, fields: fields as Record<string, unknown> });
      };
    const logger = {
      warn: record('warn'),
      error: record('error'),
      info: record('info'),
      debug: record('debug'),
    };
    const guard = namespaceReadOnly({ store: failingStore('rejects').store, logger });
    let refused = 0;
    await Promise.all(
      Array.from({ length: 10_000 }, (_, i) => {
        const req = { method: 'POST', url: `/ns${i}/x`, originalUrl: `/ns${i}/x`, headers: {} };
        return new Promise<void>((resolve) => {
          const res = {
            headersSent: false,
            writableEnded: false,
            statusCode: 200,
            setHeader() {},
            end() {
              if (this.statusCode === 503) refused++;
              resolve();
            },
          };
          guard(req as unknown as IncomingMessage, res as unknown as ServerResponse, () =>
            resolve(),
          );
        });
      }),
    );
    expect(refused).toBe(10_000);
    const requestLines = lines.filter((l) => l.fields.setup !== true);
    expect(requestLines).toHaveLength(1);
    expect(requestLines[0]).toMatchObject({
      level: 'warn',
      fields: { reason: 'store-unavailable' },
    });
  });
});

describe.each(expressVersions)('every wait has a budget ($name)', ({ express }) => {
  const never = () => new Promise<never>(() => undefined);
  const silentStore = (): StateStore => ({
    get: never,
    set: async () => undefined,
    delete: async () => undefined,
  });

  it.each([
    ['closed', 503],
    ['open', 200],
  ] as const)(
    'a store whose get never settles: onStoreError %s answers %i',
    async (policy, status) => {
      const { logger, warned } = recordingLogger();
      const { app, handled } = guardedApp(express, {
        store: silentStore(),
        timeout: 20,
        onStoreError: policy,
        logger,
      });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(status);
      expect(handled).toHaveLength(status === 200 ? 1 : 0);
      if (status === 503) {
        expect(warned()[0]?.object).toMatchObject({ reason: 'store-unavailable' });
        expect(String(warned()[0]?.object.detail)).toContain('within 20 ms');
      }
    },
  );

  it.each([
    ['closed', 503],
    ['open', 200],
  ] as const)(
    'a resolveId that never settles, with another namespace in maintenance: onStoreError %s answers %i',
    async (policy, status) => {
      const { app, store, handled } = guardedApp(express, {
        resolveId: never,
        timeout: 20,
        onStoreError: policy,
      });
      await store.set('other', 'maintenance');
      const res = await request(app).put('/api/v4/projects/456');
      expect(res.status).toBe(status);
      expect(handled).toHaveLength(status === 200 ? 1 : 0);
    },
  );

  it('a check on a store that never answers rejects within the budget, by the policy', async () => {
    const guard = namespaceReadOnly({ store: silentStore(), timeout: 20 });
    await expect(guard.assertWritable('acme')).rejects.toMatchObject({
      refusal: 'store-unavailable',
    });
  });
});

describe.each(expressVersions)("a custom store's own shapes ($name)", ({ express }) => {
  const until = new Date(Date.now() + 600_000);
  const storeOf = (value: unknown, sync: boolean): StateStore => ({
    get: async () => value as NamespaceState,
    ...(sync && { peek: () => value as NamespaceState }),
    set: async () => undefined,
    delete: async () => undefined,
  });

  it.each([
    ['an ISO string `until`', { state: 'maintenance', until: until.toISOString() }],
    ['a raw stored value', 'maintenance'],
    ['a JSON text', JSON.stringify({ state: 'maintenance', until: until.toISOString() })],
  ])('%s is read as maintenance, not as an internal error', async (_what, value) => {
    for (const sync of [true, false]) {
      const { logger, of, warned } = recordingLogger();
      const { app, handled } = guardedApp(express, { store: storeOf(value, sync), logger });
      const res = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(of('info')[0]?.object).toMatchObject({ reason: 'maintenance' });
      expect(warned()).toEqual([]);
      const retryAfter = Number(res.headers['retry-after']);
      if (typeof value === 'string' && value === 'maintenance') expect(retryAfter).toBe(900);
      else expect(retryAfter).toBeGreaterThan(590);
      expect(handled).toEqual([]);
    }
  });
});
