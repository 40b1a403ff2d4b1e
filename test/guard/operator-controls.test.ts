import type { IncomingMessage } from 'node:http';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createBypassToken,
  MemoryStateStore,
  NamespaceReadOnlyError,
  namespaceReadOnly,
  OptionsError,
} from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * The operator controls of issue 11, end to end through Express 4 and 5: scoped bypass, the
 * signal on reads, reasons that decide the status, the frozen and report states, reads that
 * write, scheduled windows, a custom answer and an exemption.
 */

const SECRET = 'a-secret-of-at-least-thirty-two-characters';
const OLD_SECRET = 'the-previous-secret-also-long-enough-1234';
const HOUR = 3_600_000;
const WRITE = (ns: string) => `/${ns}/proj/-/issues`;

async function storeWith(states: Record<string, Parameters<MemoryStateStore['set']>[1]>) {
  const store = new MemoryStateStore();
  for (const [ns, state] of Object.entries(states)) await store.set(ns, state);
  return store;
}

describe.each(expressVersions)('operator controls ($name)', ({ express }) => {
  describe('scoped bypass', () => {
    const token = (namespace: string, secret = SECRET, ttl = HOUR) =>
      createBypassToken({ secret, namespace, ttl });

    it('a token for acme opens acme, by header or cookie, and never beta', async () => {
      const store = await storeWith({ acme: 'maintenance', beta: 'maintenance' });
      const { logger, of } = recordingLogger();
      const { app, handled } = guardedApp(express, { store, bypass: { secret: SECRET }, logger });
      const t = token('acme');
      expect((await request(app).post(WRITE('acme'))).status).toBe(503);
      const byHeader = await request(app)
        .post(WRITE('acme'))
        .set('X-Namespace-Read-Only-Bypass', t);
      expect(byHeader.status).toBe(200);
      const byCookie = await request(app)
        .post(WRITE('acme'))
        .set('Cookie', `session=x; nsro_bypass=${t}`);
      expect(byCookie.status).toBe(200);
      const other = await request(app).post(WRITE('beta')).set('X-Namespace-Read-Only-Bypass', t);
      expect(other.status).toBe(503);
      expect(handled.map((h) => h.url)).toEqual([WRITE('acme'), WRITE('acme')]);
      // Logged, and the token never is.
      const bypassed = of('info').filter((e) => /bypassed/.test(e.message ?? ''));
      expect(bypassed).toHaveLength(2);
      expect(bypassed[0]?.object).toMatchObject({ namespace: 'acme', reason: 'maintenance' });
      expect(JSON.stringify(of('info'))).not.toContain(t);
      expect(JSON.stringify(of('warn'))).not.toContain(t);
    });

    it('refuses expired, tampered and foreign-secret tokens; accepts a rotated one', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const { app } = guardedApp(express, { store, bypass: { secret: [SECRET, OLD_SECRET] } });
      const send = (t: string) =>
        request(app).post(WRITE('acme')).set('X-Namespace-Read-Only-Bypass', t);
      const expired = createBypassToken({ secret: SECRET, namespace: 'acme', ttl: 1 });
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect((await send(expired)).status).toBe(503);
      const good = token('acme');
      const tampered = `${good.slice(0, -2)}${good.endsWith('AA') ? 'BB' : 'AA'}`;
      expect((await send(tampered)).status).toBe(503);
      const forged = good.replace(/^v1\.[^.]+/, `v1.${Buffer.from('beta').toString('base64url')}`);
      expect((await send(forged)).status).toBe(503);
      expect((await send(token('acme', 'someone-elses-secret-of-32-characters!!'))).status).toBe(
        503,
      );
      expect((await send('garbage')).status).toBe(503);
      // Signed with the previous secret, still listed: rotation.
      expect((await send(token('acme', OLD_SECRET))).status).toBe(200);
      expect((await send(good)).status).toBe(200);
    });

    it('only a token for * opens the instance state, and it opens nothing else', async () => {
      const store = await storeWith({ '*': 'maintenance', acme: 'maintenance' });
      const { app } = guardedApp(express, { store, bypass: { secret: SECRET } });
      const send = (path: string, t: string) =>
        request(app).post(path).set('X-Namespace-Read-Only-Bypass', t);
      expect((await send(WRITE('beta'), token('beta'))).status).toBe(503);
      expect((await send(WRITE('beta'), token('*'))).status).toBe(200);
      // acme is closed twice: its own state and the instance's; one token opens one of them.
      expect((await send(WRITE('acme'), token('*'))).status).toBe(503);
      expect((await send(WRITE('acme'), token('acme'))).status).toBe(503);
    });

    it('canBypass, sync or async, is the hook for roles; a throw means no', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const isAdmin = (req: IncomingMessage) => req.headers['x-role'] === 'admin';
      for (const canBypass of [
        (req: IncomingMessage, ns: string) => isAdmin(req) && ns === 'acme',
        async (req: IncomingMessage, ns: string) => isAdmin(req) && ns === 'acme',
      ]) {
        const { app } = guardedApp(express, { store, canBypass });
        expect((await request(app).post(WRITE('acme')).set('X-Role', 'admin')).status).toBe(200);
        expect((await request(app).post(WRITE('acme')).set('X-Role', 'user')).status).toBe(503);
      }
      const { app } = guardedApp(express, {
        store,
        canBypass: () => {
          throw new Error('role service down');
        },
      });
      expect((await request(app).post(WRITE('acme'))).status).toBe(503);
    });

    it('never lifts a refusal that is not a state: an unknowable target stays refused', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const { app } = guardedApp(express, { store, bypass: { secret: SECRET } });
      const res = await request(app)
        .post('/api/v4/projects/42/issues')
        .set('X-Namespace-Read-Only-Bypass', token('acme'));
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('?');
    });

    it('the checks honour a token on the request they are given', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const guard = namespaceReadOnly({ store, bypass: { secret: SECRET } });
      const req = {
        headers: { 'x-namespace-read-only-bypass': token('acme') },
      } as unknown as IncomingMessage;
      expect(await guard.isReadOnly('acme', req)).toBe(false);
      expect(await guard.isReadOnly('acme')).toBe(true);
      await expect(guard.assertWritable('acme', req)).resolves.toBeUndefined();
    });

    it('a bad bypass option fails at construction, naming it', () => {
      expect(() => namespaceReadOnly({ bypass: { secret: 'short' } })).toThrow(OptionsError);
      expect(() => namespaceReadOnly({ bypass: { secret: [] } })).toThrow(/bypass/);
    });
  });

  describe('signal', () => {
    it('marks reads, bypassed and reported writes for a namespace not in the default state, exposed to other origins', async () => {
      const store = await storeWith({ acme: 'maintenance', rep: 'report' });
      const { app } = guardedApp(express, { store, signal: true, bypass: { secret: SECRET } });
      const read = await request(app).get('/acme/proj');
      expect(read.status).toBe(200);
      expect(read.headers['x-namespace-read-only']).toBe('acme');
      expect(read.headers['x-namespace-read-only-state']).toBe('maintenance');
      expect(read.headers['access-control-expose-headers']).toMatch(/X-Namespace-Read-Only/);
      const bypassed = await request(app)
        .post(WRITE('acme'))
        .set(
          'X-Namespace-Read-Only-Bypass',
          createBypassToken({ secret: SECRET, namespace: 'acme', ttl: HOUR }),
        );
      expect(bypassed.status).toBe(200);
      expect(bypassed.headers['x-namespace-read-only']).toBe('acme');
      const reported = await request(app).post(WRITE('rep'));
      expect(reported.status).toBe(200);
      expect(reported.headers['x-namespace-read-only']).toBe('rep');
      expect(reported.headers['x-namespace-read-only-state']).toBe('report');
      const refused = await request(app).post(WRITE('acme'));
      expect(refused.headers['access-control-expose-headers']).toMatch(/X-Namespace-Read-Only/);
      // Nothing for a namespace in the default state.
      const beta = await request(app).get('/beta/proj');
      expect(beta.headers['x-namespace-read-only']).toBeUndefined();
    });

    it('without signal, reads carry nothing', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const { app } = guardedApp(express, { store });
      const read = await request(app).get('/acme/proj');
      expect(read.headers['x-namespace-read-only']).toBeUndefined();
    });

    it('the status handler answers what a banner needs', async () => {
      const until = new Date(Date.now() + HOUR);
      const store = await storeWith({
        acme: { state: 'maintenance', message: 'Moving', until, reason: 'migration' },
      });
      const guard = namespaceReadOnly({ store });
      const app = express();
      app.get('/-/read-only/:namespace', guard.statusHandler);
      const res = await request(app).get('/-/read-only/Acme');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        namespace: 'acme',
        readOnly: true,
        state: 'maintenance',
        message: 'Moving',
        until: until.toISOString(),
        startsAt: null,
        reason: 'migration',
      });
      expect((await request(app).get('/-/read-only/beta')).body).toMatchObject({
        namespace: 'beta',
        readOnly: false,
        state: 'active',
      });
      expect((await request(app).get('/-/read-only/a%20b')).status).toBe(400);
    });
  });

  describe('reasons decide the status', () => {
    it('statusFor maps a reason to 403 or 423 without Retry-After; others stay 503', async () => {
      const store = await storeWith({
        arch: { state: 'maintenance', reason: 'archived' },
        hold: { state: 'maintenance', reason: 'legal-hold' },
        mig: { state: 'maintenance', reason: 'migration' },
      });
      const { app } = guardedApp(express, {
        store,
        statusFor: { archived: 403, 'legal-hold': 423 },
      });
      const archived = await request(app).post(WRITE('arch')).set('Accept', 'application/json');
      expect(archived.status).toBe(403);
      expect(archived.headers['retry-after']).toBeUndefined();
      expect(archived.body).toMatchObject({ reason: 'archived', code: 'ERR_NSRO_MAINTENANCE' });
      const held = await request(app).post(WRITE('hold'));
      expect(held.status).toBe(423);
      expect(held.headers['retry-after']).toBeUndefined();
      const migrating = await request(app).post(WRITE('mig'));
      expect(migrating.status).toBe(503);
      expect(migrating.headers['retry-after']).toBe('900');
      const guard = namespaceReadOnly({ store, statusFor: { archived: 403 } });
      const error = await guard.assertWritable('arch').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NamespaceReadOnlyError);
      expect(error).toMatchObject({
        status: 403,
        reason: 'archived',
        refusal: 'maintenance',
        code: 'ERR_NSRO_MAINTENANCE',
        retryAfter: undefined,
      });
    });

    it('rejects a status it does not offer', () => {
      expect(() => namespaceReadOnly({ statusFor: { archived: 404 as 403 } })).toThrow(
        /statusFor\.archived/,
      );
    });
  });

  describe('frozen and report', () => {
    it('frozen refuses reads too, except the allowlist (git fetch)', async () => {
      const store = await storeWith({ acme: 'frozen' });
      const { app, handled } = guardedApp(express, { store });
      const read = await request(app).get('/acme/proj').set('Accept', 'application/json');
      expect(read.status).toBe(503);
      expect(read.body).toMatchObject({ namespace: 'acme', code: 'ERR_NSRO_FROZEN' });
      expect((await request(app).post(WRITE('acme'))).status).toBe(503);
      expect(
        (await request(app).get('/acme/proj.git/info/refs?service=git-upload-pack')).status,
      ).toBe(200);
      expect((await request(app).post('/acme/proj.git/git-upload-pack')).status).toBe(200);
      // A push's discovery read is a write, and the fetch rule does not let it through.
      expect(
        (await request(app).get('/acme/proj.git/info/refs?service=git-receive-pack')).status,
      ).toBe(503);
      expect((await request(app).get('/beta/proj')).status).toBe(200);
      expect(handled.map((h) => h.method)).toEqual(['GET', 'POST', 'GET']);
    });

    it('report refuses nothing and logs what maintenance would have refused', async () => {
      const store = await storeWith({ acme: 'report' });
      const { logger, of, warned } = recordingLogger();
      const { app, handled } = guardedApp(express, { store, logger });
      expect((await request(app).post(WRITE('acme'))).status).toBe(200);
      expect((await request(app).get('/acme/proj')).status).toBe(200);
      expect(handled).toHaveLength(2);
      const reported = of('info').filter((e) => /report/.test(e.message ?? ''));
      expect(reported).toHaveLength(1);
      expect(reported[0]?.object).toMatchObject({ namespace: 'acme', method: 'POST' });
      expect(warned()).toEqual([]);
      expect(await namespaceReadOnly({ store }).isReadOnly('acme')).toBe(false);
    });
  });

  describe('writeRoutes', () => {
    it('a GET that writes is refused like a write; other reads pass', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const { app } = guardedApp(express, {
        store,
        writeRoutes: [{ method: 'GET', path: '/*repo/-/export' }],
      });
      expect((await request(app).get('/acme/proj/-/export')).status).toBe(503);
      expect((await request(app).get('/acme/proj/-/issues')).status).toBe(200);
      expect((await request(app).get('/beta/proj/-/export')).status).toBe(200);
    });
  });

  describe('schedules', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('a window that starts while the process runs: writes pass before, refused from it', async () => {
      vi.useFakeTimers({ toFake: ['Date'], now: 1_800_000_000_000 });
      const startsAt = new Date(Date.now() + 60_000);
      const store = await storeWith({ acme: { state: 'maintenance', startsAt } });
      const { app } = guardedApp(express, { store, signal: true });
      const before = await request(app).post(WRITE('acme'));
      expect(before.status).toBe(200);
      expect(before.headers['x-namespace-read-only-scheduled']).toBe(
        `acme; starts=${startsAt.toISOString()}`,
      );
      vi.setSystemTime(startsAt);
      expect((await request(app).post(WRITE('acme'))).status).toBe(503);
    });
  });

  describe('handler and skip', () => {
    it('handler replaces the answer, with headers set and info', async () => {
      const store = await storeWith({ acme: { state: 'maintenance', reason: 'migration' } });
      const seen: unknown[] = [];
      const { app, handled } = guardedApp(express, {
        store,
        handler: (_req, res, _next, info) => {
          seen.push(info);
          res.end(`custom ${info.namespace}`);
        },
      });
      const res = await request(app).post(WRITE('acme'));
      expect(res.status).toBe(503);
      expect(res.text).toBe('custom acme');
      expect(res.headers['retry-after']).toBe('900');
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(seen[0]).toMatchObject({
        status: 503,
        namespace: 'acme',
        refusal: 'maintenance',
        code: 'ERR_NSRO_MAINTENANCE',
        reason: 'migration',
        retryAfter: 900,
      });
      expect(handled).toEqual([]);
    });

    it('skip exempts a request before any work; one that throws exempts nothing', async () => {
      const store = await storeWith({ acme: 'maintenance' });
      const { app } = guardedApp(express, {
        store,
        skip: (req) => req.headers['x-health'] === '1',
      });
      expect((await request(app).post(WRITE('acme')).set('X-Health', '1')).status).toBe(200);
      expect((await request(app).post(WRITE('acme'))).status).toBe(503);
      const throwing = guardedApp(express, {
        store,
        skip: () => {
          throw new Error('bug');
        },
      });
      expect((await request(throwing.app).post(WRITE('acme'))).status).toBe(503);
    });
  });
});
