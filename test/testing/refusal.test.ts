import {
  createTestGuard,
  expectNotRefusedByGuard,
  expectRefusedByGuard,
  GuardExpectationError,
  guardRefusal,
  isRefusedByGuard,
  type TestGuardOptions,
} from 'namespace-read-only/testing';
import type { Response } from 'supertest';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type ExpressFactory, expressVersions } from '../helpers/apps.js';

/**
 * The response helpers against real answers: the guard's (each form of body, each status) and an
 * application's own refusals, which look alike at a glance.
 */

function app(express: ExpressFactory, options: TestGuardOptions = {}) {
  const guard = createTestGuard(options);
  const a = express();
  a.use(guard);
  a.post('/:ns/items', (_req, res) => {
    res.status(201).json({ created: true });
  });
  // The app's own refusals: a 503 with its own JSON code, and one in plain text.
  a.post('/:ns/down', (_req, res) => {
    res.status(503).json({ message: 'Down for repairs', code: 'ERR_APP_DOWN' });
  });
  a.get('/:ns/busy', (_req, res) => {
    res.status(503).type('text').send('busy');
  });
  // An app that copies the guard's header onto its own answer, with its own code.
  a.post('/:ns/mimic', (req, res) => {
    res.status(503).set('X-Namespace-Read-Only', req.params.ns).json({ code: 'APP_LOCKED' });
  });
  return { guard, app: a };
}

const json = { Accept: 'application/json' };

/** What the helper threw, checked to be its own error. */
function failure(f: () => unknown): GuardExpectationError {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(GuardExpectationError);
    expect(error).toBeInstanceOf(Error);
    expect((error as GuardExpectationError).code).toBe('ERR_NSRO_GUARD_EXPECTATION');
    return error as GuardExpectationError;
  }
  throw new Error('expected the helper to throw');
}

describe.each(expressVersions)('refused by the guard or by the app ($name)', ({ express }) => {
  it("recognises the guard's JSON refusal and reads it", async () => {
    const { guard, app: a } = app(express);
    await guard.enable('acme', { state: 'maintenance', message: 'Moving' });
    const res = await request(a).post('/acme/items').set(json);
    expect(isRefusedByGuard(res)).toBe(true);
    const refusal = expectRefusedByGuard(res, {
      namespace: 'acme',
      code: 'ERR_NSRO_MAINTENANCE',
      status: 503,
    });
    expect(refusal).toEqual({
      status: 503,
      namespace: 'acme',
      code: 'ERR_NSRO_MAINTENANCE',
      reason: undefined,
      message: 'Moving',
      retryAfter: 900,
    });
    expect(guardRefusal(res)).toEqual(refusal);
    expect(failure(() => expectNotRefusedByGuard(res)).message).toContain(
      'the guard refused it (503, namespace "acme", ERR_NSRO_MAINTENANCE)',
    );
  });

  it('recognises the HTML page, plain text and a HEAD without a body; they carry no code', async () => {
    const { guard, app: a } = app(express);
    await guard.enable('acme', 'frozen');
    const html = await request(a).post('/acme/items').set('Accept', 'text/html');
    const text = await request(a).post('/acme/items');
    const head = await request(a).head('/acme/items');
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
    for (const res of [html, text, head]) {
      expect(expectRefusedByGuard(res, { namespace: 'acme' })).toMatchObject({
        status: 503,
        code: undefined,
      });
    }
    const noCode = failure(() => expectRefusedByGuard(text, { code: 'ERR_NSRO_FROZEN' }));
    expect(noCode.message).toContain('with code none where "ERR_NSRO_FROZEN" was expected');
    expect(noCode.message).toContain('Accept: application/json');
  });

  it("does not take the app's own 503 for the guard's, JSON or text", async () => {
    const { app: a } = app(express);
    const down = await request(a).post('/acme/down').set(json);
    const busy = await request(a).get('/acme/busy');
    for (const res of [down, busy]) {
      expect(res.status).toBe(503);
      expect(isRefusedByGuard(res)).toBe(false);
      expect(guardRefusal(res)).toBeNull();
      expectNotRefusedByGuard(res);
      expect(failure(() => expectRefusedByGuard(res)).message).toContain(
        'the 503 has no X-Namespace-Read-Only header: the app answered it',
      );
    }
  });

  it("does not take the app's 503 for the guard's when signal marks it, or it copies the header", async () => {
    const { guard, app: a } = app(express, { signal: true });
    await guard.enable('acme');
    // A read passes the guard in maintenance; `signal` marks the app's answer to it.
    const marked = await request(a).get('/acme/busy');
    expect(marked.status).toBe(503);
    expect(marked.headers['x-namespace-read-only']).toBe('acme');
    expect(isRefusedByGuard(marked)).toBe(false);
    expect(failure(() => expectRefusedByGuard(marked)).message).toContain(
      'X-Namespace-Read-Only-State',
    );
    await guard.disable('acme');
    const mimic = await request(a).post('/acme/mimic').set(json);
    expect(isRefusedByGuard(mimic)).toBe(false);
    expect(failure(() => expectRefusedByGuard(mimic)).message).toContain(
      'JSON code "APP_LOCKED" is not one of the guard\'s',
    );
    // The guard's own refusal under `signal` is still the guard's.
    await guard.enable('acme');
    expectRefusedByGuard(await request(a).post('/acme/items'), { namespace: 'acme' });
  });

  it('reads 403 and 423 from statusFor, with the reason and no Retry-After', async () => {
    const { guard, app: a } = app(express, { statusFor: { archived: 403, locked: 423 } });
    await guard.enable('acme', { state: 'maintenance', reason: 'archived' });
    await guard.enable('beta', { state: 'maintenance', reason: 'locked' });
    expect(expectRefusedByGuard(await request(a).post('/acme/items').set(json))).toMatchObject({
      status: 403,
      reason: 'archived',
      retryAfter: undefined,
    });
    const locked = await request(a).post('/beta/items').set(json);
    expectRefusedByGuard(locked, { status: 423, reason: 'locked' });
    expect(failure(() => expectRefusedByGuard(locked, { status: 503 })).message).toContain(
      'with status 423 where 503 was expected',
    );
  });

  it("reads the instance as '*' and a namespace the guard could not tell as null", async () => {
    const { guard, app: a } = app(express);
    await guard.enable('*');
    expectRefusedByGuard(await request(a).post('/acme/items').set(json), {
      namespace: '*',
      code: 'ERR_NSRO_INSTANCE_MAINTENANCE',
    });
    await guard.clear();
    await guard.enable('zeta');
    const unsure = await request(a).post('/beta/%2e%2e/items').set(json);
    expectRefusedByGuard(unsure, { namespace: null, code: 'ERR_NSRO_INVALID_NAMESPACE' });
  });

  it('recognises a refusal answered by a custom handler, by its headers', async () => {
    const { guard, app: a } = app(express, {
      handler: (_req, res) => {
        res.end('custom');
      },
    });
    await guard.enable('acme');
    expectRefusedByGuard(await request(a).post('/acme/items'), { namespace: 'acme' });
  });

  it('names what differs, and what the app answered when the guard let it through', async () => {
    const { guard, app: a } = app(express);
    await guard.enable('acme');
    const refused = await request(a).post('/acme/items').set(json);
    const wrong = failure(() => expectRefusedByGuard(refused, { namespace: 'beta' }));
    expect(wrong.message).toContain('with namespace "acme" where "beta" was expected');
    expect(wrong.message).toContain('x-namespace-read-only: acme');

    const created = await request(a).post('/beta/items').set(json);
    expectNotRefusedByGuard(created);
    const passed = failure(() => expectRefusedByGuard(created));
    expect(passed.message).toMatch(/^namespace-read-only\/testing: expected the guard to refuse/);
    expect(passed.message).toContain('it was answered 201');
    expect(passed.message).toContain('body: "{\\"created\\":true}"');
  });
});

describe('response shapes', () => {
  const refusal = {
    statusCode: 503,
    headers: {
      'X-Namespace-Read-Only': ['acme'],
      'content-type': 'application/json; charset=utf-8',
      'retry-after': 60,
    },
    body: '{"message":"m","namespace":"acme","code":"ERR_NSRO_MAINTENANCE"}',
  };

  it('reads statusCode, any header case, array and number values and a string body', () => {
    expect(guardRefusal(refusal)).toEqual({
      status: 503,
      namespace: 'acme',
      code: 'ERR_NSRO_MAINTENANCE',
      reason: undefined,
      message: 'm',
      retryAfter: 60,
    });
  });

  it('takes unreadable JSON as no body, and a response without a status as not refused', () => {
    expect(guardRefusal({ ...refusal, body: '{oops' })).toMatchObject({ code: undefined });
    expect(isRefusedByGuard({ headers: {} })).toBe(false);
    expect(failure(() => expectRefusedByGuard({ headers: {} })).message).toContain(
      'answered without a status',
    );
  });

  it('types a supertest response as what the helpers take', () => {
    const take = (res: Response) => isRefusedByGuard(res);
    expect(typeof take).toBe('function');
  });
});
