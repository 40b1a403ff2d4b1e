import { MemoryStateStore, NamespaceReadOnlyError, OptionsError } from 'namespace-read-only';
import { createTestGuard, type TestGuard } from 'namespace-read-only/testing';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type ExpressFactory, expressVersions } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/** createTestGuard, imported as a user's test imports it: the guard, its store, its controls. */

function appWith(express: ExpressFactory, guard: TestGuard) {
  const app = express();
  app.use(guard);
  app.get('/:ns/items', (_req, res) => {
    res.json([]);
  });
  app.post('/:ns/items', (_req, res) => {
    res.status(201).json({ created: true });
  });
  return app;
}

describe.each(expressVersions)('createTestGuard ($name)', ({ express }) => {
  it('enable and disable put a namespace in and out of maintenance, and only that one', async () => {
    const guard = createTestGuard();
    const app = appWith(express, guard);
    await request(app).post('/acme/items').expect(201);

    await guard.enable('Acme');
    await request(app).post('/acme/items').expect(503).expect('X-Namespace-Read-Only', 'acme');
    await request(app).post('/beta/items').expect(201);
    await request(app).get('/acme/items').expect(200);

    await guard.disable('acme');
    await request(app).post('/acme/items').expect(201);
  });

  it('enable takes a state and set options: frozen refuses reads, a message reaches the client', async () => {
    const guard = createTestGuard();
    const app = appWith(express, guard);
    await guard.enable('acme', { state: 'frozen', message: 'Moving' }, { ttl: 60_000 });
    const res = await request(app).get('/acme/items').set('Accept', 'application/json');
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ message: 'Moving', code: 'ERR_NSRO_FROZEN' });
    expect((await guard.store.get('acme'))?.expiresAt).toBeInstanceOf(Date);

    await guard.enable('*');
    expect((await request(app).post('/beta/items')).headers['x-namespace-read-only']).toBe('*');
  });

  it('list() gives the states set, clear() removes them all and the guard refuses nothing', async () => {
    const guard = createTestGuard();
    const app = appWith(express, guard);
    await guard.enable('beta');
    await guard.enable('acme', 'frozen');
    await guard.enable('*');
    expect(await guard.list()).toEqual([
      { namespace: '*', state: { state: 'maintenance' } },
      { namespace: 'acme', state: { state: 'frozen' } },
      { namespace: 'beta', state: { state: 'maintenance' } },
    ]);
    await guard.clear();
    expect(await guard.list()).toEqual([]);
    await request(app).post('/acme/items').expect(201);
    await request(app).get('/acme/items').expect(200);
    await request(app).post('/zeta/items').expect(201);
  });
});

describe('createTestGuard', () => {
  it('reads a MemoryStateStore of its own: two guards share nothing', async () => {
    const a = createTestGuard();
    const b = createTestGuard();
    expect(a.store).toBeInstanceOf(MemoryStateStore);
    expect(a.store).not.toBe(b.store);
    await a.enable('acme');
    expect(await a.isReadOnly('acme')).toBe(true);
    expect(await b.isReadOnly('acme')).toBe(false);
  });

  it("is the guard: its checks see what enable set, and throw the main entry's error", async () => {
    const guard = createTestGuard();
    await guard.enable('acme', { state: 'maintenance', reason: 'migration' });
    const error = await guard.assertWritable('acme/proj').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NamespaceReadOnlyError);
    expect(error).toMatchObject({ code: 'ERR_NSRO_MAINTENANCE', reason: 'migration' });
    await guard.close();
  });

  it('passes the guard options through: routes, statusFor and a logger', async () => {
    const log = recordingLogger();
    const guard = createTestGuard({
      routes: ['/t/:namespace/*rest'],
      statusFor: { archived: 403 },
      logger: log.logger,
    });
    const app = expressVersions[0].express();
    app.use(guard);
    app.post('/t/:ns/*rest', (_req, res) => {
      res.sendStatus(201);
    });
    await guard.enable('acme', { state: 'maintenance', reason: 'archived' });
    await request(app).post('/t/acme/x').expect(403);
    await request(app).post('/acme/x').expect(404);
    // The refusal is logged to the logger given (the default would be silence).
    expect(log.logged().some((e) => e.object.namespace === 'acme')).toBe(true);
  });

  it('rejects a store, a non-object and a bad guard option, naming the option', () => {
    const thrown = (f: () => unknown) => {
      try {
        f();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    const store = thrown(() => createTestGuard({ store: new MemoryStateStore() } as never));
    expect(store).toBeInstanceOf(OptionsError);
    expect(store).toMatchObject({ code: 'ERR_NSRO_OPTION', option: 'store' });
    expect((store as Error).message).toContain('createTestGuard option `store`');
    expect(thrown(() => createTestGuard('acme' as never))).toMatchObject({ option: 'options' });
    expect(thrown(() => createTestGuard({ retryAfter: -1 }))).toMatchObject({
      option: 'retryAfter',
    });
    expect(thrown(() => createTestGuard({ stor: 1 } as never))).toBeInstanceOf(OptionsError);
    // `{}`, `undefined` and `{ store: undefined }` are all the default.
    expect(() => createTestGuard({ store: undefined } as never)).not.toThrow();
    expect(() => createTestGuard(undefined)).not.toThrow();
  });
});
