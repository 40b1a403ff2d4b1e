import { execFile } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { context, type Span, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createBypassToken,
  MemoryStateStore,
  type NamespaceReadOnlyOptions,
  type NamespaceState,
  namespaceReadOnly,
  type StateStore,
} from '../../src/index.js';
import { expressVersions } from '../helpers/apps.js';
import { INDEX } from '../helpers/dist.js';
import { waitFor } from '../helpers/redis.js';

/**
 * OpenTelemetry: with `@opentelemetry/api` installed and an SDK registered, the span active
 * around a refused or bypassed request carries the guard's three attributes; other requests'
 * spans carry none.
 */

const SECRET = 'a-bypass-secret-of-at-least-32-characters!';
const noop = () => {};
const logger = { warn: noop, info: noop, debug: noop, error: noop };
const WRITE = (ns: string) => `/${ns}/proj/-/issues`;

const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
afterAll(() => {
  trace.disable();
  context.disable();
});
beforeEach(() => exporter.reset());

/** The guard's attributes on the span named `name`, once it has ended. */
async function attributesOf(name: string): Promise<Record<string, unknown>> {
  const span = await waitFor(
    () => exporter.getFinishedSpans().find((s: ReadableSpan) => s.name === name),
    { what: `span ${name}` },
  );
  return Object.fromEntries(
    Object.entries(span.attributes).filter(([key]) => key.startsWith('namespace_read_only.')),
  );
}

describe.each(expressVersions)('span attributes ($name)', ({ express }) => {
  function app(options: NamespaceReadOnlyOptions) {
    const tracer = trace.getTracer('test');
    const a = express();
    // What an instrumentation does: a span for the request, active while the rest runs.
    a.use((req: IncomingMessage, res: ServerResponse, next: () => void) => {
      const span: Span = tracer.startSpan(`${req.method} ${req.url}`);
      res.on('finish', () => span.end());
      context.with(trace.setSpan(context.active(), span), next);
    });
    a.use(namespaceReadOnly({ logger, ...options }));
    a.use((_req: IncomingMessage, res: ServerResponse) => res.end('ok'));
    return a;
  }

  it('a refused write: namespace, outcome refused, reason', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    await request(app({ store })).post(WRITE('acme')).expect(503);
    expect(await attributesOf(`POST ${WRITE('acme')}`)).toEqual({
      'namespace_read_only.namespace': 'acme',
      'namespace_read_only.outcome': 'refused',
      'namespace_read_only.reason': 'maintenance',
    });
  });

  it('a bypassed write: outcome bypassed, with the reason it would have been refused for', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const token = createBypassToken({ secret: SECRET, namespace: 'acme', ttl: 60_000 });
    await request(app({ store, bypass: { secret: SECRET } }))
      .post(WRITE('acme'))
      .set('x-namespace-read-only-bypass', token)
      .expect(200);
    expect(await attributesOf(`POST ${WRITE('acme')}`)).toEqual({
      'namespace_read_only.namespace': 'acme',
      'namespace_read_only.outcome': 'bypassed',
      'namespace_read_only.reason': 'maintenance',
    });
  });

  it('an admitted write, an allowlisted one and a reported one: none', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    await store.set('delta', 'report');
    const a = app({ store });
    await request(a).post(WRITE('beta')).expect(200);
    await request(a)
      .post('/acme/proj.git/git-upload-pack')
      .set('content-type', 'application/x-git-upload-pack-request')
      .expect(200);
    await request(a).post(WRITE('delta')).expect(200);
    for (const name of [
      `POST ${WRITE('beta')}`,
      'POST /acme/proj.git/git-upload-pack',
      `POST ${WRITE('delta')}`,
    ]) {
      expect(await attributesOf(name)).toEqual({});
    }
  });

  it('a refusal decided after an asynchronous store read, and one no namespace can be told for', async () => {
    // No `peek`: every state is read asynchronously, so the context must follow the promise.
    const states = new Map<string, NamespaceState>([['acme', { state: 'maintenance' }]]);
    const store: StateStore = {
      get: async (ns) => states.get(ns) ?? null,
      set: async () => {},
      delete: async () => {},
    };
    const a = app({ store });
    await request(a).post(WRITE('acme')).expect(503);
    expect(await attributesOf(`POST ${WRITE('acme')}`)).toMatchObject({
      'namespace_read_only.outcome': 'refused',
      'namespace_read_only.namespace': 'acme',
    });
    await request(a).post('/api/v4/projects/7/issues').expect(503);
    expect(await attributesOf('POST /api/v4/projects/7/issues')).toEqual({
      'namespace_read_only.outcome': 'refused',
      'namespace_read_only.reason': 'unresolvable-id',
    });
  });

  it('without an active span a refusal is answered as ever', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const a = express();
    a.use(namespaceReadOnly({ store, logger }));
    await request(a).post(WRITE('acme')).expect(503);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });
});

describe('without @opentelemetry/api installed', () => {
  it('refuses and admits as ever (the built package, as a user without it gets it)', async () => {
    const script = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === '@opentelemetry/api') {
          throw Object.assign(new Error("Cannot find module '@opentelemetry/api'"), { code: 'MODULE_NOT_FOUND' });
        }
        return resolve.call(this, request, ...rest);
      };
      const { namespaceReadOnly } = require(${JSON.stringify(INDEX.replace(/\.js$/, '.cjs'))});
      const guard = namespaceReadOnly({ logger: { warn() {}, info() {}, debug() {}, error() {} } });
      guard.store.set('acme', 'maintenance').then(() => {
        const res = { statusCode: 200, headersSent: false, setHeader() {}, getHeader() {}, on() {},
          end() { console.log('answered', res.statusCode); } };
        guard({ method: 'POST', url: '/acme/p/-/issues', originalUrl: '/acme/p/-/issues', headers: {} }, res, () => console.log('next'));
        console.log(Object.keys(require.cache).some((k) => k.includes('@opentelemetry')));
      });`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script]);
    expect(stdout.trim().split('\n')).toEqual(['answered 503', 'false']);
  });
});
