import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  gitlabRoutes,
  type IdKind,
  MemoryStateStore,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
  OptionsError,
  patternRoutes,
  type Target,
} from '../../src/index.js';
// The spec's list (gitlab.md), kept once for the tests and the fuzzer's oracle, apart from src/.
import { RESERVED } from '../e2e/fuzz/world.js';
import { type ExpressFactory, expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * Where a write's namespace comes from: the raw pathname the router matches, split on `/`, each
 * candidate decoded once. Anything the application could read as a different namespace than the
 * one checked is refused; ordinary writes to writable namespaces are not.
 */

const ns = (namespace: string): Target => ({ type: 'namespace', namespace });
const NONE: Target = { type: 'none' };
const invalid = (reason: string): Target => ({ type: 'invalid', reason });
const id = (kind: IdKind, value: string): Target => ({ type: 'id', kind, id: value });

/** Write paths whose namespace candidate cannot be trusted, with the reason the resolver gives. */
const UNTRUSTED: [path: string, reason: string][] = [
  ['/%2561cme/x', 'invalid-character'], // double encoding: `%61cme` survives one decode
  ['/acme%ZZ/x', 'undecodable'],
  ['/%E0%A4%A/x', 'undecodable'],
  ['/./x', 'dot-segment'],
  ['/../x', 'dot-segment'],
  ['/%2e%2e/x', 'dot-segment'],
  ['/%2E/x', 'dot-segment'],
  ['//acme/x', 'empty-segment'],
  ['/acme;x/y', 'invalid-character'],
  ['/acme%3Bx/y', 'invalid-character'],
  ['/acme%5Cx/y', 'invalid-character'],
  ['/acme%20/x', 'invalid-character'],
  ['/acme%09/x', 'invalid-character'],
  ['/acme%00/x', 'invalid-character'],
  ['/acme%7F/x', 'invalid-character'],
  ['/acme%3F/x', 'invalid-character'],
  ['/acme%23/x', 'invalid-character'],
  ['/%C3%A4cme/x', 'invalid-character'],
  ['/%2Facme/x', 'empty'],
  [`/${'a'.repeat(256)}/x`, 'too-long'],
  // Raw characters outside printable ASCII (Node hands bytes >= 0x80 over as latin1).
  ['/\u00e4cme/x', 'invalid-character'],
  ['/ac me/x', 'invalid-character'],
  // The router compares literals ASCII-case-insensitively: the Kelvin sign is no `k`, so this is
  // no reserved word, and no valid name either.
  ['/.well-\u212Anown/x', 'invalid-character'],
  ['/groups//acme/x', 'empty-segment'],
  ['/groups/acme%ZZ/x', 'undecodable'],
  ['/api/v4/projects//issues', 'empty-segment'],
  ['/api/v4/projects/acme%ZZ/issues', 'undecodable'],
  ['/api/v4/projects/acme%2561/issues', 'invalid-character'],
  ['/api/v4/projects/%2Facme/issues', 'empty'],
  // Express 4 lets a mounted router swallow a doubled slash (`app.use('/api/v4', r)` serves
  // `/api/v4//projects/...` as `/projects/...`), so an empty slot before the id is no answer.
  ['/api//v4/projects/acme%2Fx/issues', 'empty-segment'],
  ['/api/v4//projects/acme%2Fx/issues', 'empty-segment'],
  // Numbers an application might coerce (parseInt, to_i) into an id we never resolved.
  ['/api/v4/projects/0123/issues', 'ambiguous-id'],
  ['/api/v4/projects/123abc/issues', 'ambiguous-id'],
  ['/api/v4/projects/+5/issues', 'ambiguous-id'],
  ['/api/v4/projects/%2B5/issues', 'ambiguous-id'],
  ['/api/v4/projects/-1/issues', 'ambiguous-id'],
  ['/api/v4/projects/0', 'ambiguous-id'],
  ['/api/v4/projects/1.0', 'ambiguous-id'],
  ['/api/v4/groups/0x1F', 'ambiguous-id'],
  [`/api/v4/projects/${'9'.repeat(21)}`, 'ambiguous-id'],
];

describe('gitlabRoutes().resolve', () => {
  const { resolve } = gitlabRoutes();

  it.each<[string, Target]>([
    ['/acme', ns('acme')],
    ['/acme/', ns('acme')],
    ['/acme/x', ns('acme')],
    ['/acme/team/sub/proj/-/issues', ns('acme')],
    ['/acme//x', ns('acme')],
    ['/ACME/x', ns('acme')],
    ['/Acme/x', ns('acme')],
    ['/%61cme/x', ns('acme')],
    ['/%41CME/x', ns('acme')],
    ['/acme%2Fteam/x', ns('acme')],
    ['/acme.io/x', ns('acme.io')],
    ['/.acme/x', ns('.acme')],
    [`/${'A'.repeat(255)}/x`, ns('a'.repeat(255))],
    ['/Users-1/x', ns('users-1')],
    ['/GROUPSX/x', ns('groupsx')],
    ['/gitlab/acme/x', ns('gitlab')],
    ['/groups/acme/sub/-/edit', ns('acme')],
    ['/GROUPS/Acme/x', ns('acme')],
    ['/groups/%61cme', ns('acme')],
    ['/groups/acme%2Fsub/-/edit', ns('acme')],
    // Literal words are compared raw, as the router compares them.
    ['/%67roups/acme/x', ns('groups')],
    ['/%61pi/v4/projects/1', ns('api')],
    ['/%75sers/sign_in', ns('users')],
    ['/api/v4/projects/acme%2Fsub%2Fproj/issues', ns('acme')],
    ['/api/v4/projects/ACME%2fsub', ns('acme')],
    ['/API/V4/PROJECTS/ACME%2fx', ns('acme')],
    ['/api/v3/projects/acme%2Fproj/issues', ns('acme')],
    ['/api/v4/groups/acme%2Fsub/members', ns('acme')],
    ['/api/v4/namespaces/acme', ns('acme')],
    ['/api/v4/projects/42/issues', id('project', '42')],
    ['/api/v4/projects/%34%32', id('project', '42')],
    ['/api/v3/projects/42', id('project', '42')],
    ['/api/v4/groups/7/members', id('group', '7')],
    ['/API/V4/GROUPS/7', id('group', '7')],
    ['/api/v4/namespaces/9', id('namespace', '9')],
    ['/api/v4/projects', NONE],
    ['/api/v4/projects/', NONE],
    ['/api/v4/groups', NONE],
    ['/api/v4/users/1', NONE],
    ['/api/v4/internal/allowed', NONE],
    ['/api/v5/projects/acme%2Fx', NONE],
    ['/api/graphql', NONE],
    ['/api', NONE],
    ['/api/', NONE],
    ['/api/v4', NONE],
    ['/api/v4/', NONE],
    ['/groups', NONE],
    ['/groups/', NONE],
    ['/groups/-/x', NONE],
    ['/', NONE],
    ['', NONE],
    ['*', NONE],
  ])('%s -> %j', (path, expected) => {
    expect(resolve(path)).toEqual(expected);
  });

  it.each(RESERVED)('the reserved word %j names no namespace', (word) => {
    const expected = word === 'groups' ? ns('acme') : NONE;
    expect(resolve(`/${word}/acme/x`)).toEqual(expected);
    expect(resolve(`/${word.toUpperCase()}/acme/x`)).toEqual(expected);
    expect(resolve(`/${word}`)).toEqual(NONE);
  });

  it.each(UNTRUSTED)('%s is untrusted (%s)', (path, reason) => {
    expect(resolve(path)).toEqual(invalid(reason));
  });
});

describe('patternRoutes', () => {
  const routes = patternRoutes(['/t/:namespace{/*rest}', '/orgs/:namespace/*rest']);

  it.each<[string, Target]>([
    ['/t/acme', ns('acme')],
    ['/t/acme/', ns('acme')],
    ['/t/acme/items/1', ns('acme')],
    ['/T/Acme/items', ns('acme')],
    ['/t/%61cme/items', ns('acme')],
    ['/t/acme%2Fteam/items', ns('acme')],
    ['/orgs/acme/repos', ns('acme')],
    ['/ORGS/ACME/repos/x', ns('acme')],
    ['/t/acme%ZZ/x', invalid('undecodable')],
    ['/t/%2561cme/x', invalid('invalid-character')],
    ['/t/%2e%2e/x', invalid('dot-segment')],
    ['/t/acme%20/x', invalid('invalid-character')],
    ['/t/acme;x/y', invalid('invalid-character')],
    ['/t//acme/items', invalid('empty-segment')],
    ['/orgs//acme/repos', invalid('empty-segment')],
    ['/acme/x', NONE],
    ['/groups/acme/x', NONE],
    ['/tx/acme', NONE],
    ['/t', NONE],
    ['/t/', NONE],
    ['/', NONE],
  ])('%s -> %j', (path, expected) => {
    expect(routes.resolve(path)).toEqual(expected);
  });

  it('matches as a prefix, so a pattern without {/*rest} still covers deeper paths', () => {
    expect(patternRoutes(['/t/:namespace']).resolve('/t/acme/anything/else')).toEqual(ns('acme'));
  });

  it('takes the first pattern that matches', () => {
    const both = patternRoutes(['/t/:namespace{/*rest}', '/:namespace{/*rest}']);
    expect(both.resolve('/t/acme/x')).toEqual(ns('acme'));
    expect(both.resolve('/acme/x')).toEqual(ns('acme'));
  });

  it('refuses a doubled slash that would let a later pattern name another namespace', () => {
    // Raw, `/t//acme/x` matches only the second pattern (namespace "t"); an Express 4 router
    // mounted at `/t` serves it as `/acme/x`.
    const both = patternRoutes(['/t/:namespace{/*rest}', '/:namespace{/*rest}']);
    expect(both.resolve('/t//acme/x')).toEqual(invalid('empty-segment'));
    expect(both.resolve('/t/acme//x')).toEqual(ns('acme'));
  });

  it('takes the first segment of a wildcard namespace', () => {
    expect(patternRoutes(['/w/*namespace']).resolve('/w/Acme/team/x')).toEqual(ns('acme'));
  });

  it.each([
    ['t/:namespace', 'no leading slash'],
    ['/t/:id', 'no namespace parameter'],
    ['/t/:namespace(', 'not a valid pattern'],
  ])('rejects %j (%s)', (pattern) => {
    expect(() => patternRoutes([pattern])).toThrow(OptionsError);
  });
});

describe.each(expressVersions)('namespace resolution through the guard ($name)', ({ express }) => {
  describe('root namespace from the path', () => {
    it.each([
      ['/acme', 'acme'],
      ['/acme/x', 'acme'],
      ['/acme/team/sub/proj/-/issues', 'acme'],
      ['/groups/acme/sub/-/edit', 'acme'],
      ['/api/v4/projects/acme%2Fsub%2Fproj/issues', 'acme'],
      ['/api/v3/projects/acme%2Fproj/issues', 'acme'],
      ['/api/v4/groups/acme%2Fsub/members', 'acme'],
      ['/api/v4/namespaces/acme', 'acme'],
      ['/ACME/x', 'acme'],
      ['/Acme/x', 'acme'],
      ['/API/V4/PROJECTS/ACME%2fx', 'acme'],
      ['/%61cme/x', 'acme'],
      ['/%67roups/acme/x', 'groups'],
    ])('POST %s belongs to %s', async (path, namespace) => {
      const { app, store, handled } = guardedApp(express);
      await store.set('elsewhere', 'maintenance');
      expect((await request(app).post(path)).status).toBe(200);
      expect(handled).toHaveLength(1);

      await store.set(namespace, 'maintenance');
      const res = await request(app).post(path);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe(namespace);
      expect(handled).toHaveLength(1);
    });

    it('`/%67roups/acme/x` is not the groups route: acme in maintenance does not block it', async () => {
      const { app, store, handled } = guardedApp(express);
      await store.set('acme', 'maintenance');
      expect((await request(app).post('/%67roups/acme/x')).status).toBe(200);
      expect(handled).toHaveLength(1);
    });
  });

  it.each(RESERVED)('/%s/... names no namespace: only the instance state applies', async (word) => {
    const { app, store, handled } = guardedApp(express);
    await store.set(word, 'maintenance');
    const path = `/${word}/something`;
    expect((await request(app).post(path)).status).toBe(200);
    expect((await request(app).put(`/${word.toUpperCase()}/something`)).status).toBe(200);
    expect(handled).toHaveLength(2);

    await store.set('*', 'maintenance');
    const res = await request(app).post(path);
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('*');
    expect(handled).toHaveLength(2);
  });

  describe('untrusted candidates', () => {
    it.each(UNTRUSTED)(
      'POST %s passes with nothing in maintenance, and is blocked (%s) while another namespace is',
      async (path, reason) => {
        const { logger, logged, of, warned } = recordingLogger();
        const { app, store, handled } = guardedApp(express, {
          logger,
          resolveId: () => 'acme/x',
        });
        expect((await request(app).post(path)).status).toBe(200);
        expect(handled).toHaveLength(1);
        expect(logged()).toEqual([]);

        await store.set('other', 'maintenance');
        const res = await request(app).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('?');
        expect(handled).toHaveLength(1);
        // A client's doing (a scanner can send many): one `info` line each, no warning.
        expect(warned()).toEqual([]);
        expect(of('info')).toHaveLength(1);
        expect(of('info')[0]?.object).toMatchObject({
          reason: 'invalid-namespace',
          detail: reason,
          namespace: null,
        });
      },
    );

    it.each(UNTRUSTED.slice(0, 5))(
      'GET %s is a read and passes while another namespace is in maintenance',
      async (path) => {
        const { app, store, handled } = guardedApp(express);
        await store.set('other', 'maintenance');
        expect((await request(app).get(path)).status).not.toBe(503);
        expect(handled).toHaveLength(1);
      },
    );
  });

  describe('a writable namespace is not blocked', () => {
    it.each([
      ['POST', '/acme/x'],
      ['PUT', '/acme/team/proj/-/merge_requests/1'],
      ['DELETE', '/acme/team/proj/-/branches/main'],
      ['PATCH', '/groups/acme/-/edit'],
      ['POST', '/api/v4/projects/acme%2Fproj/issues'],
      ['PUT', '/api/v4/groups/acme'],
      ['POST', '/api/v4/projects'],
      ['POST', '/users/sign_up'],
      ['POST', '/acme//x'],
      ['POST', '/'],
    ])('%s %s with another namespace in maintenance', async (method, path) => {
      const { app, store, handled } = guardedApp(express);
      await store.set('other', 'maintenance');
      const res = await new request.Test(app, method, path);
      expect(res.status).toBe(200);
      expect(res.headers['x-namespace-read-only']).toBeUndefined();
      expect(handled).toEqual([{ method, url: path }]);
    });
  });

  describe('numeric API ids', () => {
    const PATHS: Record<IdKind, string> = {
      project: 'acme/team/proj',
      group: 'acme/team',
      namespace: 'Acme',
    };

    function resolver(mode: 'sync' | 'async') {
      const calls: [IdKind, string][] = [];
      const resolveId = (kind: IdKind, value: string) => {
        calls.push([kind, value]);
        const fullPath = value === '42' || value === '7' ? PATHS[kind] : null;
        return mode === 'sync' ? fullPath : Promise.resolve(fullPath);
      };
      return { resolveId, calls };
    }

    describe.each(['sync', 'async'] as const)('with a %s resolveId', (mode) => {
      it.each<[string, IdKind, string]>([
        ['/api/v4/projects/42/issues', 'project', '42'],
        ['/api/v3/projects/42/issues', 'project', '42'],
        ['/API/V4/PROJECTS/42/issues', 'project', '42'],
        ['/api/v4/projects/%34%32/issues', 'project', '42'],
        ['/api/v4/groups/7/members', 'group', '7'],
        ['/api/v4/namespaces/7', 'namespace', '7'],
      ])('POST %s resolves %s %s', async (path, kind, value) => {
        const { resolveId, calls } = resolver(mode);
        const { app, store, handled } = guardedApp(express, { resolveId });
        await store.set('other', 'maintenance');
        expect((await request(app).post(path)).status).toBe(200);
        expect(handled).toHaveLength(1);

        await store.set('acme', 'maintenance');
        const res = await request(app).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('acme');
        expect(handled).toHaveLength(1);
        // Asked with the id's kind and canonical digits (how often is the resolver's business).
        expect(calls.length).toBeGreaterThan(0);
        for (const call of calls) expect(call).toEqual([kind, value]);
      });

      it('an unknown id passes unless the instance is in maintenance', async () => {
        const { resolveId } = resolver(mode);
        const { app, store, handled } = guardedApp(express, { resolveId });
        await store.set('acme', 'maintenance');
        expect((await request(app).post('/api/v4/projects/999/issues')).status).toBe(200);
        expect(handled).toHaveLength(1);

        await store.set('*', 'maintenance');
        const res = await request(app).post('/api/v4/projects/999/issues');
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('*');
        expect(handled).toHaveLength(1);
      });
    });

    it('a read is never resolved', async () => {
      const { resolveId, calls } = resolver('sync');
      const { app, store, handled } = guardedApp(express, { resolveId });
      await store.set('acme', 'maintenance');
      expect((await request(app).get('/api/v4/projects/42')).status).toBe(200);
      expect(calls).toEqual([]);
      expect(handled).toHaveLength(1);
    });

    it('without resolveId a write by numeric id passes with nothing in maintenance, and is blocked while another namespace is', async () => {
      const { logger, logged, of, setup } = recordingLogger();
      const { app, store, handled } = guardedApp(express, { logger });
      expect((await request(app).post('/api/v4/projects/42/issues')).status).toBe(200);
      expect(handled).toHaveLength(1);
      expect(logged()).toEqual([]);

      await store.set('other', 'maintenance');
      const res = await request(app).post('/api/v4/projects/42/issues');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('?');
      expect(handled).toHaveLength(1);
      // The missing option was warned of once, when the guard was created; each refusal is `info`.
      expect(setup()).toEqual([expect.objectContaining({ level: 'warn' })]);
      expect(logged()).toHaveLength(1);
      expect(of('info')[0]?.object).toMatchObject({ reason: 'unresolvable-id' });
    });

    it.each(['0123', '123abc', '+5', '%2B5', '-1'])(
      'a non-canonical number (%s) passes with nothing in maintenance, and is blocked without asking resolveId while another namespace is',
      async (value) => {
        const { resolveId, calls } = resolver('sync');
        const { app, store, handled } = guardedApp(express, { resolveId });
        const path = `/api/v4/projects/${value}/issues`;
        expect((await request(app).post(path)).status).toBe(200);
        expect(handled).toHaveLength(1);

        await store.set('other', 'maintenance');
        const res = await request(app).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('?');
        expect(handled).toHaveLength(1);
        expect(calls).toEqual([]);
      },
    );

    it.each(['', 'ac me/x', '%61cme/x', '../../acme', '/acme'])(
      'a resolveId result that is no valid path (%j) passes with nothing in maintenance, and is blocked while another namespace is',
      async (fullPath) => {
        const { logger, warned } = recordingLogger();
        const { app, store, handled } = guardedApp(express, {
          resolveId: () => fullPath,
          logger,
        });
        expect((await request(app).post('/api/v4/projects/42/issues')).status).toBe(200);
        expect(handled).toHaveLength(1);

        await store.set('other', 'maintenance');
        const res = await request(app).post('/api/v4/projects/42/issues');
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('?');
        expect(handled).toHaveLength(1);
        // The resolver's doing, not the client's: a warning, one per interval however many.
        expect((await request(app).post('/api/v4/projects/43/issues')).status).toBe(503);
        expect(warned()).toHaveLength(1);
        expect(warned()[0]?.object).toMatchObject({
          reason: 'invalid-namespace',
          detail: 'resolveId result',
        });
      },
    );

    const failures: [string, NonNullable<NamespaceReadOnlyOptions['resolveId']>][] = [
      [
        'throws',
        () => {
          throw new Error('database down');
        },
      ],
      ['rejects', () => Promise.reject(new Error('database down'))],
    ];

    it.each(failures)(
      'a resolver that %s blocks the write while another namespace is in maintenance (onStoreError closed)',
      async (_, fn) => {
        const { logger, warned } = recordingLogger();
        const { app, store, handled } = guardedApp(express, { resolveId: fn, logger });
        await store.set('other', 'maintenance');
        const res = await request(app).post('/api/v4/projects/42/issues');
        expect(res.status).toBe(503);
        expect(handled).toEqual([]);
        expect(warned()[0]?.object).toMatchObject({ reason: 'store-unavailable' });
      },
    );

    it('with nothing in maintenance a write by id passes without asking resolveId (onStoreError closed)', async () => {
      let asked = 0;
      const { logger, warned } = recordingLogger();
      const { app, handled } = guardedApp(express, {
        resolveId: () => {
          asked++;
          throw new Error('database down');
        },
        logger,
      });
      expect((await request(app).post('/api/v4/projects/42/issues')).status).toBe(200);
      expect(handled).toHaveLength(1);
      expect(asked).toBe(0);
      expect(warned()).toEqual([]);
    });

    it.each(failures)(
      'a resolver that %s lets the write pass (onStoreError open)',
      async (_, fn) => {
        const { logger, entries: calls } = recordingLogger();
        const { app, store, handled } = guardedApp(express, {
          resolveId: fn,
          onStoreError: 'open',
          logger,
        });
        await store.set('acme', 'maintenance');
        const res = await request(app).post('/api/v4/projects/42/issues');
        expect(res.status).toBe(200);
        expect(handled).toHaveLength(1);
        expect(calls.filter((c) => c.level === 'error')).toHaveLength(1);
      },
    );
  });

  describe('routers mounted with app.use (Express 4 swallows a doubled slash after the mount)', () => {
    function mountedApi() {
      const store = new MemoryStateStore();
      const handled: string[] = [];
      const app = express();
      app.use(namespaceReadOnly({ store }));
      const v4 = express.Router();
      v4.post('/projects/:id/issues', (req, res) => {
        handled.push(String(req.params.id));
        res.end('created');
      });
      app.use('/api/v4', v4);
      const groups = express.Router();
      groups.post('/:group/x', (req, res) => {
        handled.push(String(req.params.group));
        res.end('created');
      });
      app.use('/groups', groups);
      return { app, store, handled };
    }

    it.each([
      '/api/v4/projects/acme%2Fproj/issues',
      '/api/v4//projects/acme%2Fproj/issues',
      '/groups/acme/x',
      '/groups//acme/x',
    ])('POST %s never reaches acme while acme is in maintenance', async (path) => {
      const { app, store, handled } = mountedApi();
      await store.set('acme', 'maintenance');
      const res = await request(app).post(path);
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
    });

    it('the same routes work while acme is writable (another namespace in maintenance)', async () => {
      const { app, store, handled } = mountedApi();
      await store.set('other', 'maintenance');
      expect((await request(app).post('/api/v4/projects/acme%2Fproj/issues')).status).toBe(200);
      expect((await request(app).post('/groups/acme/x')).status).toBe(200);
      expect(handled).toEqual(['acme/proj', 'acme']);
    });
  });

  describe('raw request targets (absolute-form, `#`, `\\`), as the router parses them', () => {
    /** Guard, then a handler that records the namespace parameter the router matched. */
    function recordingApp(options: NamespaceReadOnlyOptions = {}) {
      const store = new MemoryStateStore();
      const matched: string[] = [];
      const app = express();
      app.use(namespaceReadOnly({ ...options, store }));
      app.use('/:ns', (req, res) => {
        matched.push(String(req.params.ns));
        res.end('ok');
      });
      return { app, store, matched };
    }

    it.each([
      ['POST http://example.com/acme/x', 'acme', 'acme'],
      ['POST https://example.com/Acme/x', 'Acme', 'acme'],
      ['POST HTTP://EXAMPLE.COM/%61cme/x', 'acme', 'acme'],
      ['POST http://user@example.com:8080/acme/x', 'acme', 'acme'],
      ['POST ftp://example.com/acme/x', 'acme', 'acme'],
      ['POST http://example.com/acme\\x/y', 'acme', 'acme'],
      ['POST /acme/x#frag', 'acme', 'acme'],
      ['POST /acme#/other/x', 'acme', 'acme'],
      ['POST /acme/x?a=1#b', 'acme', 'acme'],
      ['POST /%61cme/x#', 'acme', 'acme'],
      ['POST /other\\acme/x#', 'other', 'other'],
      ["POST /ac'me/x#", "ac'me", "ac'me"],
      ['GET http://example.com/acme/x?_method=POST', 'acme', 'acme'],
    ])('%s: the guard checks the namespace the router matched', async (line, param, namespace) => {
      const { app, store, matched } = recordingApp();
      await withServer(app, async (port) => {
        const open = await rawRequest(port, line);
        expect(open.status).toBe(200);
        expect(matched).toEqual([param]);

        await store.set(namespace, 'maintenance');
        const closed = await rawRequest(port, line);
        expect(closed.status).toBe(503);
        expect(closed.headers['x-namespace-read-only']).toBe(namespace);
        expect(matched).toEqual([param]);
      });
    });

    // With nothing in maintenance the guard steps aside: the router answers as it would alone
    // (no route for an empty segment, 400 for what it cannot decode).
    it.each<[string, number, string[]]>([
      ['POST http://example.com//acme/x', 404, []],
      ['POST http://example.com/.%2e/x', 200, ['..']],
      ['POST /acme\\x/y', 200, ['acme\\x']],
      ['POST /%2561cme/x#', 200, ['%61cme']],
      ['POST /acme%ZZ/x#', 400, []],
    ])(
      '%s: an untrusted candidate is blocked while another namespace is in maintenance, and left to the router (%i) with nothing in maintenance',
      async (line, idleStatus, idleMatched) => {
        const { app, store, matched } = recordingApp();
        await withServer(app, async (port) => {
          const idle = await rawRequest(port, line);
          expect(idle.status).toBe(idleStatus);
          expect(idle.headers['x-namespace-read-only']).toBeUndefined();
          expect(matched).toEqual(idleMatched);

          await store.set('other', 'maintenance');
          const res = await rawRequest(port, line);
          expect(res.status).toBe(503);
          expect(res.headers['x-namespace-read-only']).toBe('?');
          expect(matched).toEqual(idleMatched);
        });
      },
    );

    it('a `_method` after `#` is a fragment, not an override', async () => {
      const { app, store, matched } = recordingApp();
      await store.set('acme', 'maintenance');
      await withServer(app, async (port) => {
        expect((await rawRequest(port, 'GET /acme/x#?_method=POST')).status).toBe(200);
        expect(matched).toEqual(['acme']);
      });
    });

    it.each(['inside the mounted app', 'in front with relativeUrlRoot'])(
      'absolute-form under a /gitlab prefix, guard %s',
      async (where) => {
        const store = new MemoryStateStore();
        const front = where.startsWith('in front');
        const guard = namespaceReadOnly({ store, relativeUrlRoot: front ? '/gitlab' : '' });
        const matched: string[] = [];
        const inner = express();
        if (!front) inner.use(guard);
        inner.use('/:ns', (req, res) => {
          matched.push(String(req.params.ns));
          res.end('ok');
        });
        const parent = express();
        if (front) parent.use(guard);
        parent.use('/gitlab', inner);
        await store.set('acme', 'maintenance');
        await withServer(parent, async (port) => {
          const res = await rawRequest(port, 'POST http://example.com/GitLab/acme/x');
          expect(res.status).toBe(503);
          expect(res.headers['x-namespace-read-only']).toBe('acme');
          const other = await rawRequest(port, 'POST http://example.com/gitlab/other/x');
          expect(other.status).toBe(200);
          expect(matched).toEqual(['other']);
        });
      },
    );
  });

  describe('an app served under a prefix', () => {
    /** `parent` mounts `app` at `/gitlab`; the guard sits inside `app` or in front of `parent`. */
    function prefixed(
      where: 'inside' | 'front',
      options: NamespaceReadOnlyOptions = {},
      mountPath = '/gitlab',
    ) {
      const store = new MemoryStateStore();
      const guard = namespaceReadOnly({ ...options, store });
      const handled: string[] = [];
      const record = (tag: string) => (req: IncomingMessage, res: ServerResponse) => {
        handled.push(`${tag} ${req.url}`);
        res.end('ok');
      };
      const app = express();
      if (where === 'inside') app.use(guard);
      app.use(record('app'));
      const parent = express();
      if (where === 'front') parent.use(guard);
      parent.use(mountPath, app);
      parent.use(record('parent'));
      return { parent, store, handled };
    }

    it.each([
      ['/gitlab/acme/x', 'acme'],
      ['/GitLab/acme/x', 'acme'],
      ['/gitlab/ACME/team/proj/-/issues', 'acme'],
      ['/gitlab/groups/acme/-/edit', 'acme'],
      ['/gitlab/api/v4/projects/acme%2Fproj/issues', 'acme'],
      ['/gitlab/gitlab/x', 'gitlab'],
    ])('guard inside the mounted app: POST %s belongs to %s', async (path, namespace) => {
      const { parent, store, handled } = prefixed('inside');
      await store.set('elsewhere', 'maintenance');
      expect((await request(parent).post(path)).status).toBe(200);
      await store.set(namespace, 'maintenance');
      const res = await request(parent).post(path);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe(namespace);
      expect(handled).toHaveLength(1);
    });

    it.each([
      ['/gitlab/acme/x', 'acme'],
      ['/GitLab/acme/x', 'acme'],
      ['/GITLAB/Acme/x', 'acme'],
      ['/gitlab/api/v4/projects/acme%2Fproj/issues', 'acme'],
      ['/gitlab/gitlab/x', 'gitlab'],
      ['/gitlabx/acme/x', 'gitlabx'],
    ])(
      'guard in front with relativeUrlRoot /gitlab: POST %s belongs to %s',
      async (path, namespace) => {
        const { parent, store, handled } = prefixed('front', { relativeUrlRoot: '/gitlab' });
        await store.set('elsewhere', 'maintenance');
        expect((await request(parent).post(path)).status).toBe(200);
        await store.set(namespace, 'maintenance');
        const res = await request(parent).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe(namespace);
        expect(handled).toHaveLength(1);
      },
    );

    it('the root is segment-bounded: /gitlabx/acme/x is not acme', async () => {
      const { parent, store, handled } = prefixed('front', { relativeUrlRoot: '/gitlab' });
      await store.set('acme', 'maintenance');
      const res = await request(parent).post('/gitlabx/acme/x');
      expect(res.status).toBe(200);
      expect(handled).toEqual(['parent /gitlabx/acme/x']);
    });

    it.each(['/gitlab', '/gitlab/'])(
      'POST %s (the root itself) names no namespace',
      async (path) => {
        for (const where of ['inside', 'front'] as const) {
          const { parent, store } = prefixed(where, { relativeUrlRoot: '/gitlab' });
          await store.set('gitlab', 'maintenance');
          expect((await request(parent).post(path)).status).toBe(200);
          await store.set('*', 'maintenance');
          expect((await request(parent).post(path)).status).toBe(503);
        }
      },
    );

    it('relativeUrlRoot /gitlab/gitlab: the namespace follows the whole root', async () => {
      const { parent, store, handled } = prefixed(
        'front',
        { relativeUrlRoot: '/gitlab/gitlab' },
        '/gitlab/gitlab',
      );
      await store.set('gitlab', 'maintenance');
      expect((await request(parent).post('/gitlab/gitlab/acme/x')).status).toBe(200);
      await store.set('acme', 'maintenance');
      const res = await request(parent).post('/gitlab/gitlab/acme/x');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual(['app /acme/x']);
    });

    it('a mount and the same relativeUrlRoot strip the prefix once, not twice', async () => {
      const { parent, store, handled } = prefixed('inside', { relativeUrlRoot: '/gitlab' });
      await store.set('acme', 'maintenance');
      expect((await request(parent).post('/gitlab/gitlab/acme')).status).toBe(200);
      await store.set('gitlab', 'maintenance');
      const res = await request(parent).post('/gitlab/gitlab/acme');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('gitlab');
      expect(handled).toEqual(['app /gitlab/acme']);
    });

    it.each(['inside', 'front'] as const)(
      'guard %s: a doubled slash after the prefix is untrusted (blocked while another namespace is in maintenance, passes with nothing in maintenance)',
      async (where) => {
        const { parent, store, handled } = prefixed(where, { relativeUrlRoot: '/gitlab' });
        expect((await request(parent).post('/gitlab//acme/x')).status).toBe(200);
        expect(handled).toHaveLength(1);

        await store.set('other', 'maintenance');
        const res = await request(parent).post('/gitlab//acme/x');
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('?');
        expect(handled).toHaveLength(1);
      },
    );
  });

  describe('custom patterns with a non-GitLab app', () => {
    const routes = ['/t/:namespace{/*rest}', '/orgs/:namespace/*rest'];

    it.each([
      ['/t/acme', 'acme'],
      ['/t/acme/items/1', 'acme'],
      ['/T/Acme/items', 'acme'],
      ['/t/%61cme/items', 'acme'],
      ['/orgs/acme/repos', 'acme'],
      ['/ORGS/acme/repos/x/y', 'acme'],
    ])('POST %s belongs to %s', async (path, namespace) => {
      const { app, store, handled } = guardedApp(express, { routes });
      await store.set('elsewhere', 'maintenance');
      expect((await request(app).post(path)).status).toBe(200);
      await store.set(namespace, 'maintenance');
      const res = await request(app).post(path);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe(namespace);
      expect(handled).toHaveLength(1);
    });

    it.each(['/acme/x', '/groups/acme/x', '/api/v4/projects/acme%2Fx', '/tx/acme'])(
      'POST %s names no namespace (GitLab grammar is not used)',
      async (path) => {
        const { app, store, handled } = guardedApp(express, { routes });
        await store.set('acme', 'maintenance');
        expect((await request(app).post(path)).status).toBe(200);
        await store.set('*', 'maintenance');
        const res = await request(app).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('*');
        expect(handled).toHaveLength(1);
      },
    );

    it.each(['/t/acme%ZZ/x', '/t/%2e%2e/x', '/t/%2561cme/x', '/t/acme%5C/x', '/t//acme/x'])(
      'POST %s is untrusted (blocked while another namespace is in maintenance, passes with nothing in maintenance)',
      async (path) => {
        const { app, store, handled } = guardedApp(express, { routes });
        expect((await request(app).post(path)).status).toBe(200);
        expect(handled).toHaveLength(1);

        await store.set('other', 'maintenance');
        const res = await request(app).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('?');
        expect(handled).toHaveLength(1);
      },
    );

    it('a tenant router mounted at /t never serves acme while acme is in maintenance', async () => {
      const store = new MemoryStateStore();
      const handled: string[] = [];
      const app = express();
      app.use(namespaceReadOnly({ store, routes: ['/t/:namespace{/*rest}'] }));
      const tenant = express.Router();
      tenant.post('/:tenant/items', (req, res) => {
        handled.push(String(req.params.tenant));
        res.end('created');
      });
      app.use('/t', tenant);
      expect((await request(app).post('/t/acme/items')).status).toBe(200);
      await store.set('acme', 'maintenance');
      for (const path of ['/t/acme/items', '/t//acme/items', '/T/ACME/items']) {
        expect((await request(app).post(path)).status).toBe(503);
      }
      expect(handled).toEqual(['acme']);
    });
  });
});

type ExpressApp = ReturnType<ExpressFactory>;

/** Runs `fn` against `app` listening on an ephemeral port, then closes it. */
async function withServer(app: ExpressApp, fn: (port: number) => Promise<void>) {
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  try {
    await fn((server.address() as AddressInfo).port);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/**
 * Sends `line` (method and target, byte-exact) as an HTTP/1.1 request over a plain socket:
 * supertest would normalise absolute-form targets, `#` and `\` before they left the client.
 */
function rawRequest(
  port: number,
  line: string,
): Promise<{ status: number; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const head = data.slice(0, data.indexOf('\r\n\r\n')).split('\r\n');
      const status = Number((head[0] ?? '').split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const header of head.slice(1)) {
        const colon = header.indexOf(':');
        headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
      }
      resolve({ status, headers });
    });
    socket.write(
      `${line} HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
    );
  });
}
