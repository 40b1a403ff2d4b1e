import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import express5 from 'express';
import { Counter, Registry } from 'prom-client';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBypassToken,
  MemoryStateStore,
  type NamespaceReadOnlyMiddleware,
  type NamespaceReadOnlyOptions,
  type NamespaceState,
  namespaceReadOnly,
  OptionsError,
  RedisStateStore,
  type StateStore,
} from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { INDEX } from '../helpers/dist.js';
import { connectClient, type RedisServer, startRedis, stopAll, waitFor } from '../helpers/redis.js';

/**
 * The `metrics` option with a real prom-client registry: what is counted, under which labels,
 * how far the labels can grow, and what the gauges say about each store.
 */

const SECRET = 'a-bypass-secret-of-at-least-32-characters!';
const noop = () => {};
const logger = { warn: noop, info: noop, debug: noop, error: noop };
const WRITE = (ns: string) => `/${ns}/proj/-/issues`;

type Labels = Record<string, string>;

/** The samples of a scrape: `[name, labels, value]`. */
function samples(text: string): [string, Labels, number][] {
  const out: [string, Labels, number][] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable sample: ${line}`);
    const labels: Labels = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k as string] = v as string;
    }
    out.push([m[1] as string, labels, Number(m[3])]);
  }
  return out;
}

/** The value of the sample `name` with exactly `labels`; `undefined` when there is none. */
function sample(text: string, name: string, labels: Labels = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = samples(text).find(
    ([n, l]) => n === name && JSON.stringify(Object.entries(l).sort()) === want,
  );
  return found?.[2];
}

const decisions = (text: string, outcome: string, reason: string) =>
  sample(text, 'nsro_decisions_total', { outcome, reason });

/**
 * Calls the guard as Express would, without a server: resolves with `'next'` or `'end'`. For
 * traffic in bulk (an admitted write finishes synchronously).
 */
function call(guard: NamespaceReadOnlyMiddleware, method: string, url: string): Promise<string> {
  return new Promise((resolve) => {
    const res = Object.assign(new EventEmitter(), {
      statusCode: 200,
      headersSent: false,
      setHeader: () => res,
      getHeader: () => undefined,
      end: () => resolve('end'),
    });
    const req = { method, url, originalUrl: url, baseUrl: '', headers: {} };
    guard(req as unknown as IncomingMessage, res as unknown as ServerResponse, () =>
      resolve('next'),
    );
  });
}

describe.each(expressVersions)('metrics ($name)', ({ express }) => {
  it('counts each decision by outcome and reason, and refusals by the namespace in maintenance', async () => {
    const registry = new Registry();
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    await store.set('gamma', 'maintenance');
    await store.set('delta', 'report');
    const { app } = guardedApp(express, {
      store,
      bypass: { secret: SECRET },
      metrics: { registry },
      logger,
    });
    const post = (path: string) => request(app).post(path).set('content-type', 'application/json');

    for (let i = 0; i < 2; i++) await post(WRITE('acme')).expect(503);
    for (let i = 0; i < 3; i++) await post(WRITE('beta')).expect(200);
    const token = createBypassToken({ secret: SECRET, namespace: 'gamma', ttl: 60_000 });
    await post(WRITE('gamma')).set('x-namespace-read-only-bypass', token).expect(200);
    await post(WRITE('delta')).expect(200);
    // git fetch: allowlisted, even in maintenance
    await request(app)
      .post('/acme/proj.git/git-upload-pack')
      .set('content-type', 'application/x-git-upload-pack-request')
      .expect(200);
    await request(app).get('/acme/proj').expect(200); // a read: not decided, not counted

    const text = await registry.metrics();
    expect(text).toContain('# TYPE nsro_decisions_total counter');
    expect(decisions(text, 'admitted', 'none')).toBe(3);
    expect(decisions(text, 'refused', 'maintenance')).toBe(2);
    expect(decisions(text, 'bypassed', 'maintenance')).toBe(1);
    expect(decisions(text, 'reported', 'maintenance')).toBe(1);
    expect(decisions(text, 'allowlisted', 'maintenance')).toBe(1);
    // Every other series the verdict can produce is there, at 0, so a rate sees its first rise.
    expect(decisions(text, 'refused', 'store-unavailable')).toBe(0);
    expect(decisions(text, 'refused', 'instance-maintenance')).toBe(0);
    expect(decisions(text, 'admitted', 'store-unavailable')).toBe(0);
    const total = samples(text)
      .filter(([name]) => name === 'nsro_decisions_total')
      .reduce((sum, [, , v]) => sum + v, 0);
    expect(total).toBe(8);

    expect(sample(text, 'nsro_refused_total', { namespace: 'acme' })).toBe(2);
    expect(sample(text, 'nsro_refused_total', { namespace: '-' })).toBe(0);
    const labelled = samples(text)
      .filter(([name]) => name === 'nsro_refused_total')
      .map(([, l]) => l.namespace);
    expect(labelled.sort()).toEqual(['-', 'acme']);
  });

  it('counts refusals no state made under namespace "-", and the instance under "*"', async () => {
    const registry = new Registry();
    const { app, store } = guardedApp(express, { metrics: { registry }, logger });
    await store.set('*', 'maintenance');
    await request(app).post(WRITE('acme')).expect(503);
    await request(app).post(WRITE('beta')).expect(503);
    // a numeric id and no resolveId: the namespace cannot be told
    await request(app).post('/api/v4/projects/123/issues').expect(503);
    const text = await registry.metrics();
    expect(decisions(text, 'refused', 'instance-maintenance')).toBe(2);
    expect(decisions(text, 'refused', 'unresolvable-id')).toBe(1);
    expect(sample(text, 'nsro_refused_total', { namespace: '*' })).toBe(2);
    expect(sample(text, 'nsro_refused_total', { namespace: '-' })).toBe(1);
  });
});

describe('metric labels stay bounded', () => {
  const seriesOf = async (registry: Registry) => samples(await registry.metrics()).length;

  it('10,000 distinct namespaces written to while idle add no series', async () => {
    const registry = new Registry();
    const guard = namespaceReadOnly({ metrics: { registry }, logger });
    const before = await seriesOf(registry);
    for (let i = 0; i < 10_000; i++) {
      expect(await call(guard, 'POST', WRITE(`ns${i}`))).toBe('next');
    }
    expect(await seriesOf(registry)).toBe(before);
    // Idle writes are admitted writes all the same.
    expect(decisions(await registry.metrics(), 'admitted', 'none')).toBe(10_000);
  });

  it('while a namespace is in maintenance, neither writable namespaces nor unknowable targets add series', async () => {
    const registry = new Registry();
    const guard = namespaceReadOnly({ metrics: { registry }, logger });
    await guard.store.set('acme', 'maintenance');
    expect(await call(guard, 'POST', WRITE('acme'))).toBe('end');
    const before = await seriesOf(registry);
    for (let i = 0; i < 10_000; i++) {
      expect(await call(guard, 'POST', WRITE(`ns${i}`))).toBe('next');
    }
    for (let i = 0; i < 1000; i++) {
      expect(await call(guard, 'POST', `/api/v4/projects/${i}/issues`)).toBe('end');
    }
    const text = await registry.metrics();
    expect(samples(text)).toHaveLength(before);
    expect(sample(text, 'nsro_refused_total', { namespace: '-' })).toBe(1000);
    expect(sample(text, 'nsro_refused_total', { namespace: 'acme' })).toBe(1);
  });

  it("drops a namespace's series once it has left maintenance and its last count was scraped", async () => {
    const registry = new Registry();
    const guard = namespaceReadOnly({ metrics: { registry }, logger });
    await guard.store.set('acme', 'maintenance');
    await call(guard, 'POST', WRITE('acme'));
    await call(guard, 'POST', WRITE('acme'));
    await guard.store.delete('acme');
    // The scrape after it left still shows its final count...
    let text = await registry.metrics();
    expect(sample(text, 'nsro_refused_total', { namespace: 'acme' })).toBe(2);
    // ... and the next one no longer has the series.
    text = await registry.metrics();
    expect(sample(text, 'nsro_refused_total', { namespace: 'acme' })).toBeUndefined();
    // Back in maintenance: a new series.
    await guard.store.set('acme', 'maintenance');
    await call(guard, 'POST', WRITE('acme'));
    text = await registry.metrics();
    expect(sample(text, 'nsro_refused_total', { namespace: 'acme' })).toBe(1);
  });
});

describe('gauges and store errors', () => {
  it('memory store: namespaces not in the default state, knowledge age 0, push up', async () => {
    const registry = new Registry();
    const guard = namespaceReadOnly({ metrics: { registry }, logger });
    let text = await registry.metrics();
    expect(sample(text, 'nsro_namespaces_in_maintenance')).toBe(0);
    expect(sample(text, 'nsro_state_age_seconds')).toBe(0);
    expect(sample(text, 'nsro_push_up')).toBe(1);
    // No fence, no gauge of writes in flight.
    expect(text).not.toContain('nsro_inflight_writes');

    await guard.store.set('acme', 'maintenance');
    await guard.store.set('beta', 'frozen');
    await guard.store.set('gamma', 'report');
    await guard.store.set('*', 'maintenance');
    await guard.store.set('delta', 'active');
    await guard.store.set('short', 'maintenance', { ttl: 1 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    text = await registry.metrics();
    expect(sample(text, 'nsro_namespaces_in_maintenance')).toBe(4);
    await guard.store.delete('*');
    expect(sample(await registry.metrics(), 'nsro_namespaces_in_maintenance')).toBe(3);
  });

  it('counts the store failures the guard sees, by kind; a store that cannot say leaves its gauges NaN', async () => {
    let mode: 'reject' | 'hang' = 'reject';
    const failing: StateStore = {
      get: () =>
        mode === 'reject'
          ? Promise.reject(new Error('down'))
          : new Promise<NamespaceState | null>(() => {}),
      set: async () => {},
      delete: async () => {},
    };
    const registry = new Registry();
    const resolveId = () => {
      throw new Error('lookup down');
    };
    const guard = namespaceReadOnly({
      store: failing,
      metrics: { registry },
      timeout: 20,
      resolveId,
      logger,
    });
    expect(await call(guard, 'POST', WRITE('acme'))).toBe('end');
    mode = 'hang';
    expect(await call(guard, 'POST', WRITE('acme'))).toBe('end');
    expect(await call(guard, 'POST', '/api/v4/projects/1/issues')).toBe('end');
    await expect(guard.isReadOnly('acme')).resolves.toBe(true); // a check's timeout counts too

    const text = await registry.metrics();
    expect(sample(text, 'nsro_store_errors_total', { kind: 'read' })).toBe(1);
    expect(sample(text, 'nsro_store_errors_total', { kind: 'timeout' })).toBe(2);
    expect(sample(text, 'nsro_store_errors_total', { kind: 'resolve-id' })).toBe(1);
    expect(decisions(text, 'refused', 'store-unavailable')).toBe(3);
    expect(sample(text, 'nsro_refused_total', { namespace: '-' })).toBe(3);
    expect(sample(text, 'nsro_namespaces_in_maintenance')).toBeNaN();
    expect(sample(text, 'nsro_state_age_seconds')).toBeNaN();
    expect(sample(text, 'nsro_push_up')).toBeNaN();
  });

  it('onStoreError open: writes admitted unchecked are admitted with reason store-unavailable', async () => {
    const failing: StateStore = {
      get: () => Promise.reject(new Error('down')),
      set: async () => {},
      delete: async () => {},
    };
    const registry = new Registry();
    const guard = namespaceReadOnly({
      store: failing,
      onStoreError: 'open',
      metrics: { registry },
      logger,
    });
    expect(await call(guard, 'POST', WRITE('acme'))).toBe('next');
    const text = await registry.metrics();
    expect(decisions(text, 'admitted', 'store-unavailable')).toBe(1);
    expect(decisions(text, 'admitted', 'none')).toBe(0);
  });
});

describe('the metrics option', () => {
  const create = (metrics: unknown) =>
    namespaceReadOnly({ metrics, logger } as unknown as NamespaceReadOnlyOptions);
  const optionOf = (metrics: unknown): string => {
    try {
      create(metrics);
    } catch (error) {
      expect(error).toBeInstanceOf(OptionsError);
      return (error as OptionsError).option;
    }
    throw new Error('no error');
  };

  it('is checked once, when the guard is created, naming the option', () => {
    expect(optionOf(5)).toBe('metrics');
    expect(optionOf(null)).toBe('metrics');
    expect(optionOf({})).toBe('metrics.registry');
    expect(optionOf({ registry: {} })).toBe('metrics.registry');
    expect(optionOf({ registry: new Registry(), prefix: '9x' })).toBe('metrics.prefix');
    expect(optionOf({ registry: new Registry(), prefix: 5 })).toBe('metrics.prefix');
    expect(optionOf({ registry: new Registry(), regsitry: 1 })).toBe('metrics.regsitry');
    expect(() => create({ registry: new Registry(), Prefix: 'x_' })).toThrow(
      /did you mean `prefix`/,
    );
  });

  it('takes a prefix; names another metric already holds are refused', async () => {
    const registry = new Registry();
    namespaceReadOnly({ metrics: { registry, prefix: 'gitlab_nsro_' }, logger });
    expect(await registry.metrics()).toContain('gitlab_nsro_decisions_total{');
    new Counter({ name: 'mine_push_up', help: 'not ours', registers: [registry] });
    expect(optionOf({ registry, prefix: 'mine_' })).toBe('metrics.prefix');
    expect(() => create({ registry, prefix: 'mine_' })).toThrow(/holds mine_push_up/);
  });

  it('guards sharing a registry share its metrics; a closed guard leaves the gauges', async () => {
    const registry = new Registry();
    const a = namespaceReadOnly({ metrics: { registry }, logger });
    const b = namespaceReadOnly({ metrics: { registry }, logger });
    await a.store.set('acme', 'maintenance');
    await b.store.set('acme', 'maintenance');
    await b.store.set('beta', 'maintenance');
    await call(a, 'POST', WRITE('acme'));
    await call(b, 'POST', WRITE('acme'));
    let text = await registry.metrics();
    expect(decisions(text, 'refused', 'maintenance')).toBe(2);
    expect(sample(text, 'nsro_refused_total', { namespace: 'acme' })).toBe(2);
    expect(sample(text, 'nsro_namespaces_in_maintenance')).toBe(3); // the two stores' states
    await b.close();
    text = await registry.metrics();
    expect(decisions(text, 'refused', 'maintenance')).toBe(2); // counters never go down
    expect(sample(text, 'nsro_namespaces_in_maintenance')).toBe(1);
  });

  it('without prom-client installed: an OptionsError naming metrics, and a guard without it works', async () => {
    const run = promisify(execFile);
    // What a missing package looks like to require().
    const hide = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === 'prom-client') {
          throw Object.assign(new Error("Cannot find module 'prom-client'"), { code: 'MODULE_NOT_FOUND' });
        }
        return resolve.call(this, request, ...rest);
      };`;
    const script = `${hide}
      const { namespaceReadOnly } = require(${JSON.stringify(INDEX.replace(/\.js$/, '.cjs'))});
      const registry = { registerMetric() {}, getSingleMetric() {} };
      try {
        namespaceReadOnly({ metrics: { registry } });
        console.log('no error');
      } catch (error) {
        console.log(error.name, error.option, /npm install prom-client/.test(error.message));
      }
      console.log(typeof namespaceReadOnly());`;
    const { stdout } = await run(process.execPath, ['-e', script]);
    expect(stdout.trim().split('\n')).toEqual(['OptionsError metrics true', 'function']);
  });

  it('without the option, neither build loads prom-client', async () => {
    const run = promisify(execFile);
    const cjs = `
      const { namespaceReadOnly } = require(${JSON.stringify(INDEX.replace(/\.js$/, '.cjs'))});
      namespaceReadOnly();
      console.log(Object.keys(require.cache).filter((k) => k.includes('prom-client')).length);`;
    const esm = `
      import { createRequire } from 'node:module';
      const { namespaceReadOnly } = await import(${JSON.stringify(INDEX)});
      namespaceReadOnly();
      const cache = createRequire(import.meta.url).cache;
      console.log(Object.keys(cache).filter((k) => k.includes('prom-client')).length);`;
    expect((await run(process.execPath, ['-e', cjs])).stdout.trim()).toBe('0');
    expect((await run(process.execPath, ['--input-type=module', '-e', esm])).stdout.trim()).toBe(
      '0',
    );
  });
});

describe('with a real Redis', () => {
  let server: RedisServer;

  beforeAll(async () => {
    // Notifications on: `keyspaceEvents: 'auto'` uses them, and never turns them back on.
    server = await startRedis(['--notify-keyspace-events', 'K$gx']);
  });
  afterAll(stopAll);

  it('push up while the store is complete, 0 once push is silent; knowledge age small', async () => {
    const redis = await connectClient(server.port);
    const store = new RedisStateStore({
      redis,
      prefix: 'push:',
      keyspaceEvents: 'auto',
      canaryInterval: 200,
      logger,
    });
    const registry = new Registry();
    const guard = namespaceReadOnly({ store, metrics: { registry }, logger });
    try {
      expect(await store.ready()).toMatchObject({ mode: 'complete' });
      await store.set('acme', 'maintenance');
      await server.cli('set', 'push:state:*', 'frozen');
      await waitFor(() => store.peek('*') !== null, { what: 'the instance state pushed' });
      let text = await registry.metrics();
      expect(sample(text, 'nsro_push_up')).toBe(1);
      expect(sample(text, 'nsro_namespaces_in_maintenance')).toBe(2);
      const age = sample(text, 'nsro_state_age_seconds') as number;
      expect(age).toBeGreaterThanOrEqual(0);
      expect(age).toBeLessThan(1); // the canary proves push every 200 ms
      // The Redis store's own failure kinds are exported, at 0 so far.
      expect(sample(text, 'nsro_store_errors_total', { kind: 'redis-read' })).toBe(0);
      expect(sample(text, 'nsro_store_errors_total', { kind: 'redis-canary' })).toBe(0);

      await server.cli('config', 'set', 'notify-keyspace-events', '');
      await waitFor(() => store.status().mode === 'degraded', {
        timeout: 5000,
        what: 'the store to notice push is silent',
      });
      text = await registry.metrics();
      expect(sample(text, 'nsro_push_up')).toBe(0);
      expect(sample(text, 'nsro_namespaces_in_maintenance')).toBeNaN();
      expect(sample(text, 'nsro_state_age_seconds')).toBeNaN();
    } finally {
      await server.cli('config', 'set', 'notify-keyspace-events', 'K$gx');
      await guard.close();
      await store.close();
      redis.disconnect();
    }
  });

  it('fence on: the writes in flight', async () => {
    const redis = await connectClient(server.port);
    const store = new RedisStateStore({ redis, prefix: 'fence:', logger });
    const registry = new Registry();
    const guard = namespaceReadOnly({ store, fence: true, metrics: { registry }, logger });
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let arrived = () => {};
    const inHandler = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const app = express5();
    app.use(guard);
    app.use(async (_req, res) => {
      arrived();
      await held;
      res.end('done');
    });
    await store.ready();
    const listener = await new Promise<ReturnType<typeof app.listen>>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const { port } = listener.address() as AddressInfo;
      expect(sample(await registry.metrics(), 'nsro_inflight_writes')).toBe(0);
      const write = fetch(`http://127.0.0.1:${port}${WRITE('acme')}`, { method: 'POST' });
      await inHandler;
      expect(sample(await registry.metrics(), 'nsro_inflight_writes')).toBe(1);
      release();
      expect((await write).status).toBe(200);
      await waitFor(async () => sample(await registry.metrics(), 'nsro_inflight_writes') === 0, {
        what: 'the write to leave the count',
      });
    } finally {
      release();
      listener.close();
      await guard.close();
      await store.close();
      redis.disconnect();
    }
  });
});
