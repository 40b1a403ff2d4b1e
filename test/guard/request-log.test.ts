import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  type Logger,
  MemoryStateStore,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
  type StateStore,
} from '../../src/index.js';
import { defaultLogger, isSilent, resolveLogger } from '../../src/logger.js';
import { requestIdOf } from '../../src/request/request-id.js';
import { type ExpressFactory, expressVersions } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * Where the guard's lines about a request go: the request's own logger when it carries one
 * (pino-http's `req.log`), with the request's id, and the guard's logger for the rest.
 */

/** JSON lines a pino logger writes, parsed. */
function pinoLines(level: pino.Level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { logger: pino({ level }, destination), lines };
}

let nextId = 0;

/**
 * What pino-http does before the guard runs: `req.id` (its `genReqId`: the `X-Request-Id`
 * header's value if any, else a counter) and `req.log`, a child bound to the request.
 */
function pinoHttpLike(parent: pino.Logger) {
  return (req: IncomingMessage, _res: ServerResponse, next: () => void) => {
    const header = req.headers['x-request-id'];
    const id = typeof header === 'string' ? header : ++nextId;
    Object.assign(req, { id, log: parent.child({ req: { id, method: req.method } }) });
    next();
  };
}

async function appWith(
  express: ExpressFactory,
  options: NamespaceReadOnlyOptions,
  before?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void,
) {
  const store = (options.store ?? new MemoryStateStore({ logger: false })) as StateStore;
  await store.set('acme', 'maintenance');
  const guard = namespaceReadOnly({ resolveId: () => null, ...options, store });
  const app = express();
  if (before !== undefined) app.use(before);
  app.use(guard);
  app.use((_req: IncomingMessage, res: ServerResponse) => {
    res.end('ok');
  });
  return app;
}

describe.each(expressVersions)("a request's own logger ($name)", ({ express }) => {
  it("takes the refusal line, with the request's id, and the guard's logger does not", async () => {
    const own = pinoLines('info');
    const guardLog = recordingLogger();
    const app = await appWith(express, { logger: guardLog.logger }, pinoHttpLike(own.logger));
    const res = await request(app).post('/acme/proj/-/issues').set('X-Request-Id', 'req-7');
    expect(res.status).toBe(503);
    expect(own.lines).toEqual([
      expect.objectContaining({
        level: 30,
        req: { id: 'req-7', method: 'POST' },
        reqId: 'req-7',
        namespace: 'acme',
        method: 'POST',
        path: '/acme/proj/-/issues',
        reason: 'maintenance',
        msg: 'namespace-read-only: write blocked',
      }),
    ]);
    expect(guardLog.logged()).toEqual([]);
  });

  it("carries pino-http's own numeric id", async () => {
    const own = pinoLines('info');
    const app = await appWith(express, {}, pinoHttpLike(own.logger));
    expect((await request(app).post('/acme/x')).status).toBe(503);
    expect(own.lines).toHaveLength(1);
    expect(typeof own.lines[0]?.reqId).toBe('number');
    expect(own.lines[0]).toMatchObject({ req: { id: own.lines[0]?.reqId } });
  });

  it('hears nothing with `logger: false`, which silences the guard altogether', async () => {
    const own = pinoLines('debug');
    const app = await appWith(express, { logger: false }, pinoHttpLike(own.logger));
    expect((await request(app).post('/acme/x')).status).toBe(503);
    expect((await request(app).post('/acme/proj.git/git-upload-pack')).status).toBe(200);
    expect(own.lines).toEqual([]);
  });

  it('takes allowlisted (debug) and reported (info) lines too', async () => {
    const own = pinoLines('debug');
    const store = new MemoryStateStore({ logger: false });
    await store.set('beta', 'report');
    const app = await appWith(express, { store }, pinoHttpLike(own.logger));
    await request(app).post('/acme/proj.git/git-upload-pack').set('X-Request-Id', 'a');
    await request(app).post('/beta/x').set('X-Request-Id', 'b');
    expect(own.lines.map((l) => [l.level, l.reqId, l.msg])).toEqual([
      [20, 'a', 'namespace-read-only: allowlisted write'],
      [30, 'b', 'namespace-read-only: write would be refused (report)'],
    ]);
  });

  it('leaves the rate-limited lines (a failing store) to the guard, with the id', async () => {
    const own = pinoLines('debug');
    const guardLog = recordingLogger();
    const failing: StateStore = {
      get: () => Promise.reject(new Error('down')),
      set: async () => undefined,
      delete: async () => undefined,
    };
    const guard = namespaceReadOnly({ store: failing, logger: guardLog.logger });
    const app = express();
    app.use(pinoHttpLike(own.logger));
    app.use(guard);
    const res = await request(app).post('/acme/x').set('X-Request-Id', 'r1');
    expect(res.status).toBe(503);
    expect(own.lines).toEqual([]);
    expect(guardLog.warned()).toEqual([
      expect.objectContaining({ object: expect.objectContaining({ reqId: 'r1' }) }),
    ]);
  });

  it("a request logger that throws changes no answer, and the guard's logger is not used", async () => {
    const boom = () => {
      throw new Error('sink down');
    };
    const guardLog = recordingLogger();
    const app = await appWith(express, { logger: guardLog.logger }, (req, _res, next) => {
      Object.assign(req, { log: { warn: boom, info: boom, debug: boom, error: boom } });
      next();
    });
    expect((await request(app).post('/acme/x')).status).toBe(503);
    expect((await request(app).post('/acme/proj.git/git-upload-pack')).status).toBe(200);
    expect(guardLog.logged()).toEqual([]);
  });

  it("a `log` that is not a logger is ignored: the guard's logger takes the line, with the header's id", async () => {
    const guardLog = recordingLogger();
    const app = await appWith(express, { logger: guardLog.logger }, (req, _res, next) => {
      Object.assign(req, { log: () => undefined });
      next();
    });
    await request(app).post('/acme/x').set('X-Request-Id', 'abc-123');
    expect(guardLog.of('info')).toEqual([
      expect.objectContaining({ object: expect.objectContaining({ reqId: 'abc-123' }) }),
    ]);
  });
});

describe('requestIdOf', () => {
  const req = (fields: Record<string, unknown>, headers: Record<string, unknown> = {}) =>
    ({ ...fields, headers }) as unknown as IncomingMessage;

  it('prefers req.id (pino-http, express-request-id), then the X-Request-Id header', () => {
    expect(requestIdOf(req({ id: 42 }, { 'x-request-id': 'h' }))).toBe(42);
    expect(requestIdOf(req({ id: 'abc' }, { 'x-request-id': 'h' }))).toBe('abc');
    expect(requestIdOf(req({}, { 'x-request-id': 'h' }))).toBe('h');
    expect(requestIdOf(req({}, { 'x-request-id': ['first', 'second'] }))).toBe('first');
    expect(requestIdOf(req({ id: '' }, { 'x-request-id': 'h' }))).toBe('h');
  });

  it('has none when neither says', () => {
    expect(requestIdOf(undefined)).toBeUndefined();
    expect(requestIdOf(req({}))).toBeUndefined();
    expect(requestIdOf(req({ id: Number.NaN }))).toBeUndefined();
    expect(requestIdOf(req({ id: { an: 'object' } }))).toBeUndefined();
    expect(requestIdOf(req({}, { 'x-request-id': '' }))).toBeUndefined();
  });

  it('cuts a long id at 128 characters and never logs a control character raw', () => {
    const long = requestIdOf(req({}, { 'x-request-id': 'x'.repeat(1000) }));
    expect(long).toBe(`${'x'.repeat(128)}…`);
    expect(requestIdOf(req({}, { 'x-request-id': 'a\nb\r\x1b[31m\x7f\u0085\u2028' }))).toBe(
      'a\\u000ab\\u000d\\u001b[31m\\u007f\\u0085\\u2028',
    );
    expect(requestIdOf(req({ id: 'tab\there' }))).toBe('tab\\u0009here');
  });
});

describe('the logger option', () => {
  it('absent: one shared pino logger at warn on stderr; false: silence; a logger: wrapped', () => {
    const a = resolveLogger(undefined);
    expect(resolveLogger(undefined)).toBe(a);
    expect(defaultLogger()).toBe(a);
    expect(isSilent(a)).toBe(false);
    expect(isSilent(resolveLogger(false))).toBe(true);
    const { logger, entries } = recordingLogger();
    const wrapped: Logger = resolveLogger(logger);
    expect(wrapped).not.toBe(logger);
    wrapped.warn({ a: 1 }, 'm');
    expect(entries).toEqual([{ level: 'warn', object: { a: 1 }, message: 'm' }]);
  });

  it('the guard creates its default store with its own logger (silent with false)', async () => {
    const { logger, warned } = recordingLogger();
    const guard = namespaceReadOnly({ logger, resolveId: () => null });
    await guard.store.set('acme', 'maintenence' as never);
    expect(warned()).toEqual([
      expect.objectContaining({ object: { namespace: 'acme', value: 'maintenence' } }),
    ]);
  });
});
