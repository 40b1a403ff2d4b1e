import { once } from 'node:events';
import type { Server } from 'node:http';
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBypassToken,
  FenceTimeoutError,
  namespaceReadOnly,
  RedisStateStore,
} from '../../src/index.js';
import { guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';
import { connectClient, type RedisServer, startRedis, stopAll, waitFor } from '../helpers/redis.js';

/**
 * The operator controls against a real redis-server, driven as operators drive them: the new
 * state values typed with `redis-cli`, and the migration fence counting a bypassed write.
 */

const SECRET = 'a-secret-of-at-least-thirty-two-characters';
const WRITE = (ns: string) => `/${ns}/proj/-/issues`;

let server: RedisServer;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  await stopAll();
});

async function storeOnServer() {
  const client = await connectClient(server.port);
  const store = new RedisStateStore({ redis: client });
  expect((await store.ready()).mode).toBe('complete');
  return store;
}

describe('frozen, report and scheduled windows typed with redis-cli', () => {
  it('frozen refuses reads; report refuses nothing and logs; a JSON startsAt schedules', async () => {
    await server.cli('flushall');
    const store = await storeOnServer();
    const { logger, of } = recordingLogger();
    const { app } = guardedApp(express, { store, logger });

    await server.cli('set', 'nsro:state:acme', 'frozen');
    await waitFor(() => store.peek('acme')?.state === 'frozen', { what: 'frozen pushed' });
    expect((await request(app).get('/acme/proj')).status).toBe(503);
    expect((await request(app).post(WRITE('acme'))).status).toBe(503);

    await server.cli('set', 'nsro:state:acme', 'report');
    await waitFor(() => store.peek('acme')?.state === 'report', { what: 'report pushed' });
    expect((await request(app).get('/acme/proj')).status).toBe(200);
    expect((await request(app).post(WRITE('acme'))).status).toBe(200);
    expect(of('info').some((e) => /report/.test(e.message ?? ''))).toBe(true);

    const startsAt = new Date(Date.now() + 400);
    await server.cli(
      'set',
      'nsro:state:acme',
      JSON.stringify({ state: 'maintenance', startsAt: startsAt.toISOString() }),
    );
    await waitFor(() => store.peek('acme')?.startsAt !== undefined, { what: 'window pushed' });
    // Before the window: writes pass. From it: refused, with no further push needed.
    if (Date.now() < startsAt.getTime()) {
      expect((await request(app).post(WRITE('acme'))).status).toBe(200);
    }
    await waitFor(async () => (await request(app).post(WRITE('acme'))).status === 503, {
      what: 'the window to start',
    });
    await store.close();
  });
});

describe('the fence counts a bypassed write', () => {
  it('a wait does not return while a bypassed write to the namespace runs', async () => {
    await server.cli('flushall');
    const store = await storeOnServer();
    const guard = namespaceReadOnly({ store, fence: true, bypass: { secret: SECRET } });
    let finish: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let started = false;
    const app = express();
    app.use(guard);
    app.post('/:ns/proj/-/issues', (_req, res) => {
      started = true;
      void held.then(() => res.status(201).end());
    });
    const web: Server = app.listen(0, '127.0.0.1');
    await once(web, 'listening');
    await waitFor(async () => (await server.cli('zcard', 'nsro:procs')) === '1', {
      what: 'registration',
    });
    try {
      await store.set('acme', 'maintenance');
      const token = createBypassToken({ secret: SECRET, namespace: 'acme', ttl: 60_000 });
      const write = request(web).post(WRITE('acme')).set('X-Namespace-Read-Only-Bypass', token);
      const answered = write.then((r) => r.status);
      await waitFor(() => started, { what: 'the bypassed write admitted' });

      const early = await store.wait('acme', { timeout: 300 }).catch((e: unknown) => e);
      expect(early).toBeInstanceOf(FenceTimeoutError);
      expect((early as FenceTimeoutError).pending[0]?.inflightHere).toBe(1);

      finish();
      expect(await answered).toBe(201);
      await expect(store.wait('acme', { timeout: 5000 })).resolves.toMatchObject({
        namespace: 'acme',
      });
    } finally {
      finish();
      web.closeAllConnections();
      await new Promise((resolve) => web.close(resolve));
      await guard.close();
      await store.close();
    }
  });
});
