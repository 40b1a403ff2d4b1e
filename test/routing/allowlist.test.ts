import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type AllowRule, gitlabAllowlist, type NamespaceReadOnlyOptions } from '../../src/index.js';
import { type ExpressFactory, expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * Writes that pass while read-only: GitLab's allowlist, matched by method and route shape with
 * the router's semantics (case-insensitive, one optional trailing slash), never by substring.
 * The conformance cases are GitLab's own specs (reference/gitlab.md).
 */

type Case = readonly [method: string, path: string];

/** Allowed while the whole instance is read-only (GitLab's specs, CE and EE maintenance mode). */
const INSTANCE_ALLOWED: Case[] = [
  ['POST', '/api/v4/internal'],
  ['POST', '/api/v4/internal/'],
  ['POST', '/api/v4/internal/allowed'],
  ['PUT', '/api/v4/internal/lfs/x'],
  ['POST', '/api/v3/internal/allowed'],
  ['POST', '/api/v4/geo_replication/designs/1'],
  ['POST', '/api/graphql'],
  ['POST', '/api/graphql/'],
  ['POST', '/admin/sidekiq'],
  ['POST', '/admin/sidekiq/'],
  ['GET', '/admin/sidekiq'],
  ['GET', '/admin/sidekiq/'],
  ['POST', '/admin/sidekiq/queues/default'],
  ['POST', '/root/rouge.git/info/lfs/objects/batch'],
  ['POST', '/root/rouge.git/info/lfs/objects/batch/'],
  ['POST', '/root/rouge.git/git-upload-pack'],
  ['POST', '/root/rouge.git/git-upload-pack/'],
  ['POST', '/users/sign_out'],
  ['POST', '/users/sign_out/'],
  ['POST', '/admin/session'],
  ['POST', '/admin/session/'],
  ['POST', '/admin/session/destroy'],
  ['POST', '/admin/session/destroy/'],
  ['POST', '/users/sign_in'],
  ['POST', '/users/sign_in/'],
  ['POST', '/oauth/token'],
  ['POST', '/oauth/token/'],
  ['POST', '/users/auth/gitlab/callback'],
  ['POST', '/users/auth/ldapmain/callback'],
  ['POST', '/users/auth/saml'],
  ['POST', '/jwt/auth'],
  // The router's semantics: literals match case-insensitively.
  ['POST', '/USERS/Sign_In'],
  ['POST', '/Root/Rouge.GIT/git-upload-pack'],
];

/** Blocked while the instance is read-only. */
const INSTANCE_BLOCKED: Case[] = [
  ['PATCH', '/test_request'],
  ['PUT', '/test_request'],
  ['POST', '/test_request'],
  ['DELETE', '/test_request'],
  // A file creation whose path merely ends like the LFS route.
  ['POST', '/root/gitlab-ce/new/master/app/info/lfs/objects/batch'],
  ['POST', '/root/gitlab-ce/-/new/master/app.git/info/lfs/objects/batch'],
  ['POST', '/root/rouge.git/info/lfs/locks'],
  ['POST', '/root/rouge.git/info/lfs/locks/'],
  ['POST', '/root/rouge.git/info/lfs/locks/verify'],
  ['POST', '/root/rouge.git/info/lfs/locks/verify/'],
  ['POST', '/root/rouge.git/info/lfs/locks/1/unlock'],
  ['POST', '/root/rouge.git/info/lfs/locks/1/unlock/'],
  ['POST', '/root/rouge.git/git-receive-pack'],
  ['POST', '/root/rouge.git/git-receive-pack/'],
  // Admin routes, without an `isAdmin` option.
  ['PUT', '/api/v4/application/settings'],
  ['POST', '/admin/application_settings/general'],
  ['PATCH', '/admin/geo/nodes/1'],
];

/** Substring, prefix and suffix look-alikes of allowed routes, and wrong methods. */
const LOOK_ALIKES: Case[] = [
  ['POST', '/users/sign_in_evil'],
  ['POST', '/users/sign_in/x'],
  ['POST', '/x/users/sign_in'],
  ['POST', '/api/v4/internalx'],
  ['POST', '/x/api/v4/internal'],
  ['POST', '/api/v4/%69nternal/allowed'],
  ['POST', '/admin/sidekiqx'],
  ['POST', '/x/admin/sidekiq'],
  ['POST', '/api/graphql/x'],
  ['POST', '/api/graphqlx'],
  ['POST', '/admin/sessionx'],
  ['POST', '/root/rouge.git/git-upload-packx'],
  ['POST', '/root/rouge.git/git-upload-pack//'],
  ['POST', '/root/rouge.git/git-upload-pack/x'],
  ['POST', '/root/rouge.git/info/lfs/objects/batch/x'],
  ['POST', '/root/rouge/git-upload-pack'],
  ['POST', '/users/auth'],
  ['PUT', '/users/sign_in'],
  ['DELETE', '/api/graphql'],
  ['PUT', '/root/rouge.git/git-upload-pack'],
  ['PATCH', '/root/rouge.git/info/lfs/objects/batch'],
];

/** Allowed in the namespace scope, with namespace `root` in maintenance. */
const NAMESPACE_ALLOWED: Case[] = [
  ['POST', '/root/rouge.git/git-upload-pack'],
  ['POST', '/root/rouge.git/git-upload-pack/'],
  ['POST', '/root/rouge.git/info/lfs/objects/batch'],
  ['POST', '/root/rouge.git/info/lfs/objects/batch/'],
  ['POST', '/root/sub/rouge.git/git-upload-pack'],
  ['POST', '/root/rouge/-/compare'],
  ['POST', '/root/rouge/-/compare/'],
  ['POST', '/root/sub/rouge/-/compare'],
];

/** Blocked in the namespace scope, with namespace `root` in maintenance. */
const NAMESPACE_BLOCKED: Case[] = [
  ['POST', '/root/rouge.git/info/lfs/locks'],
  ['POST', '/root/rouge.git/info/lfs/locks/'],
  ['POST', '/root/rouge.git/info/lfs/locks/verify'],
  ['POST', '/root/rouge.git/info/lfs/locks/verify/'],
  ['POST', '/root/rouge.git/info/lfs/locks/1/unlock'],
  ['POST', '/root/rouge.git/info/lfs/locks/1/unlock/'],
  ['POST', '/root/rouge.git/git-receive-pack'],
  ['POST', '/root/rouge.git/git-receive-pack/'],
  ['POST', '/root/gitlab-ce/new/master/app/info/lfs/objects/batch'],
  ['POST', '/root/gitlab-ce/-/new/master/app.git/info/lfs/objects/batch'],
  ['POST', '/root/gitlab-ce/-/new/master/app.git/git-upload-pack'],
  ['POST', '/root/rouge/-/merge_requests/1/-/compare'],
  ['POST', '/root/rouge/-/compare/x'],
  ['POST', '/root/rouge/-/issues'],
];

function send(app: Parameters<typeof request>[0], [method, path]: Case) {
  return new request.Test(app, method, path);
}

describe.each(expressVersions)('allowlist ($name)', ({ express }) => {
  /** A guarded app with `key` (a namespace, or `*` for the instance) in maintenance. */
  async function closed(key: string, options: NamespaceReadOnlyOptions = {}) {
    const setup = guardedApp(express, options);
    await setup.store.set(key, 'maintenance');
    return setup;
  }

  async function expectAllowed(app: ExpressApp, handled: unknown[], c: Case) {
    const res = await send(app, c);
    expect(res.status).toBe(200);
    expect(res.headers['x-namespace-read-only']).toBeUndefined();
    expect(handled).toEqual([{ method: c[0], url: c[1] }]);
  }

  async function expectBlocked(app: ExpressApp, handled: unknown[], c: Case, key: string) {
    const res = await send(app, c);
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe(key);
    expect(handled).toEqual([]);
  }

  describe("the app's routing settings", () => {
    const ROUTES: Case[] = [
      ['POST', '/acme/proj.git/git-upload-pack'],
      ['POST', '/acme/proj.git/info/lfs/objects/batch'],
      ['POST', '/acme/proj/-/compare'],
    ];

    it.each([
      ['POST', '/acme/proj.git/GIT-UPLOAD-PACK'],
      ['POST', '/acme/proj.git/info/LFS/objects/batch'],
      ['POST', '/acme/proj/-/Compare'],
    ] as Case[])('case sensitive routing: %s %s is another route, refused', async (...c) => {
      const { app, handled } = await closed('acme');
      app.set('case sensitive routing', true);
      await expectBlocked(app, handled, c, 'acme');
    });

    it.each([
      ['POST', '/acme/proj.git/git-upload-pack/'],
      ['POST', '/acme/proj.git/info/lfs/objects/batch/'],
      ['POST', '/acme/proj/-/compare/'],
    ] as Case[])('strict routing: %s %s is another route, refused', async (...c) => {
      const { app, handled } = await closed('acme');
      app.set('strict routing', true);
      await expectBlocked(app, handled, c, 'acme');
    });

    it.each(ROUTES)('both settings: the exact route %s %s still passes', async (...c) => {
      const { app, handled } = await closed('acme');
      app.set('case sensitive routing', true);
      app.set('strict routing', true);
      await expectAllowed(app, handled, c);
    });

    it.each([
      ['POST', '/acme/proj.git/GIT-UPLOAD-PACK/'],
      ['POST', '/acme/proj/-/Compare/'],
    ] as Case[])(
      'by default (the router ignores case and one trailing slash): %s %s passes',
      async (...c) => {
        const { app, handled } = await closed('acme');
        await expectAllowed(app, handled, c);
      },
    );
  });

  describe('instance maintenance (`*`): GitLab conformance cases', () => {
    it.each(INSTANCE_ALLOWED)('%s %s is allowed', async (...c) => {
      const { app, handled } = await closed('*');
      await expectAllowed(app, handled, c);
    });

    it.each(INSTANCE_BLOCKED)('%s %s is blocked', async (...c) => {
      const { app, handled } = await closed('*');
      await expectBlocked(app, handled, c, '*');
    });

    it.each(LOOK_ALIKES)('look-alike %s %s is blocked', async (...c) => {
      const { app, handled } = await closed('*');
      await expectBlocked(app, handled, c, '*');
    });

    it('POST /test_request, then POST /api/v4/internal on the same app: no state leaks', async () => {
      const { app, handled } = await closed('*');
      expect((await request(app).post('/test_request')).status).toBe(503);
      expect((await request(app).post('/api/v4/internal')).status).toBe(200);
      expect((await request(app).post('/test_request')).status).toBe(503);
      expect(handled).toEqual([{ method: 'POST', url: '/api/v4/internal' }]);
    });

    it('PATCH /test_request with JSON gets the maintenance message as JSON', async () => {
      const { app, store, handled } = await closed('*', { message: 'Upgrading, back at 10:00' });
      const configured = await request(app).patch('/test_request').send({ title: 'x' });
      expect(configured.status).toBe(503);
      expect(configured.headers['content-type']).toMatch(/^application\/json/);
      expect(configured.body).toMatchObject({ message: 'Upgrading, back at 10:00' });

      await store.set('*', { state: 'maintenance', message: 'Database failover' });
      const own = await request(app).patch('/test_request').send({ title: 'x' });
      expect(own.status).toBe(503);
      expect(own.body).toMatchObject({ message: 'Database failover' });
      expect(handled).toEqual([]);
    });

    it('an allowlisted write is logged at debug with the rule that let it through', async () => {
      const { logger, logged } = recordingLogger();
      const { app } = await closed('*', { logger });
      expect((await request(app).post('/users/sign_in/')).status).toBe(200);
      expect(logged()).toEqual([
        {
          level: 'debug',
          object: expect.objectContaining({ rule: 'POST /users/sign_in', path: '/users/sign_in/' }),
          message: 'namespace-read-only: allowlisted write',
        },
      ]);
    });
  });

  describe('namespace scope (`root` in maintenance)', () => {
    it.each(NAMESPACE_ALLOWED)('%s %s is allowed', async (...c) => {
      const { app, handled } = await closed('root');
      await expectAllowed(app, handled, c);
    });

    it.each(NAMESPACE_BLOCKED)('%s %s is blocked', async (...c) => {
      const { app, handled } = await closed('root');
      await expectBlocked(app, handled, c, 'root');
    });

    it.each<Case>([
      ['POST', '/users/sign_up'],
      ['POST', '/admin/users'],
      ['POST', '/api/v4/projects'],
    ])('%s %s names no namespace, so it passes even with an empty allowlist', async (...c) => {
      const { app, handled } = await closed('root', { allowlist: [] });
      await expectAllowed(app, handled, c);
    });

    it('writes to other namespaces are untouched', async () => {
      const { app, handled } = await closed('root');
      await expectAllowed(app, handled, ['POST', '/rooted/rouge.git/git-receive-pack']);
    });
  });

  describe('git push discovery (GET info/refs?service=git-receive-pack)', () => {
    it.each(['root', '*'])('is refused with a plain-text 503 when %s is closed', async (key) => {
      const { app, handled } = await closed(key);
      const res = await request(app)
        .get('/root/rouge.git/info/refs?service=git-receive-pack')
        .set('Accept', '*/*')
        .set('Git-Protocol', 'version=2')
        .set('User-Agent', 'git/2.43.0');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe(key);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.text.length).toBeGreaterThan(1);
      expect(handled).toEqual([]);
    });

    it.each([
      '/root/rouge.git/info/refs?service=git-receive-pack',
      '/root/rouge.git/info/refs/?service=git-receive-pack',
      '/Root/Rouge.GIT/info/refs?service=GIT-RECEIVE-PACK',
      '/root/sub/rouge.git/info/refs?foo=1&service=git-receive-pack',
      '/root/rouge.git/info/refs?service=git-upload-pack&service=git-receive-pack',
    ])('GET %s is refused', async (path) => {
      const { app, handled } = await closed('root');
      const res = await request(app).get(path);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('root');
      expect(handled).toEqual([]);
    });

    it.each([
      '/root/rouge.git/info/refs?service=git-upload-pack',
      '/root/rouge.git/info/refs',
      '/root/rouge?service=git-receive-pack',
      '/root/rouge.git/info/refs/x?service=git-receive-pack',
      '/other/rouge.git/info/refs?service=git-receive-pack',
    ])('GET %s is allowed', async (path) => {
      const { app, handled } = await closed('root');
      const res = await request(app).get(path);
      expect(res.status).toBe(200);
      expect(handled).toEqual([{ method: 'GET', url: path }]);
    });
  });

  describe('admin-only routes', () => {
    const ADMIN: Case[] = [
      ['PUT', '/api/v4/application/settings'],
      ['POST', '/admin/application_settings/general'],
      ['PATCH', '/admin/geo/nodes/1'],
      ['POST', '/admin/geo/settings'],
    ];
    const isAdmin = (req: IncomingMessage) => req.headers['x-test-admin'] === 'yes';

    it.each(ADMIN)('%s %s is allowed for an administrator', async (...c) => {
      const { app, handled } = await closed('*', { allowlist: gitlabAllowlist({ isAdmin }) });
      const res = await send(app, c).set('X-Test-Admin', 'yes');
      expect(res.status).toBe(200);
      expect(handled).toHaveLength(1);
    });

    it.each(ADMIN)('%s %s is blocked for anyone else', async (...c) => {
      const { app, handled } = await closed('*', { allowlist: gitlabAllowlist({ isAdmin }) });
      const res = await send(app, c).set('X-Test-Admin', 'no');
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
    });

    it.each(ADMIN)('%s %s is blocked without an isAdmin option', async (...c) => {
      const { app, handled } = await closed('*');
      const res = await send(app, c).set('X-Test-Admin', 'yes');
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
    });

    it('only `true` counts as an administrator', async () => {
      const truthy = (() => 'yes') as unknown as (req: IncomingMessage) => boolean;
      const { app, handled } = await closed('*', {
        allowlist: gitlabAllowlist({ isAdmin: truthy }),
      });
      expect((await request(app).put('/api/v4/application/settings')).status).toBe(503);
      expect(handled).toEqual([]);
    });

    it('an isAdmin that throws means "not allowed", and is logged', async () => {
      const { logger, logged } = recordingLogger();
      const { app, handled } = await closed('*', {
        logger,
        allowlist: gitlabAllowlist({
          isAdmin: () => {
            throw new Error('session store down');
          },
        }),
      });
      expect((await request(app).put('/api/v4/application/settings')).status).toBe(503);
      expect(handled).toEqual([]);
      // The condition's failure (an error), then the refusal itself (expected in a maintenance).
      expect(logged().map((c) => c.level)).toEqual(['error', 'info']);
    });
  });

  describe('custom allowlists', () => {
    it('extending the preset keeps its rules and adds the new one', async () => {
      const allowlist: AllowRule[] = [...gitlabAllowlist(), { method: 'POST', path: '/custom/:x' }];
      for (const c of [
        ['POST', '/custom/1'],
        ['POST', '/custom/1/'],
        ['POST', '/CUSTOM/1'],
        ['POST', '/root/rouge.git/git-upload-pack'],
      ] as const) {
        const { app, handled } = await closed('*', { allowlist });
        await expectAllowed(app, handled, c);
      }
      for (const c of [
        ['POST', '/custom'],
        ['POST', '/custom/1/2'],
        ['POST', '/customx/1'],
        ['PUT', '/custom/1'],
      ] as const) {
        const { app, handled } = await closed('*', { allowlist });
        await expectBlocked(app, handled, c, '*');
      }
    });

    it.each<Case>([
      ['POST', '/root/rouge.git/git-upload-pack'],
      ['POST', '/root/rouge.git/info/lfs/objects/batch'],
      ['POST', '/api/v4/internal/allowed'],
      ['POST', '/users/sign_in'],
    ])('replacing it with [] blocks even %s %s', async (...c) => {
      const { app, handled } = await closed('*', { allowlist: [] });
      await expectBlocked(app, handled, c, '*');
    });

    it('a method list and `*` (every write method)', async () => {
      const allowlist: AllowRule[] = [
        { method: ['PUT', 'patch'], path: '/settings' },
        { method: '*', path: '/webhooks{/*rest}' },
      ];
      for (const c of [
        ['PUT', '/settings'],
        ['PATCH', '/settings'],
        ['POST', '/webhooks'],
        ['PROPFIND', '/webhooks/a/b'],
        ['DELETE', '/webhooks/a'],
      ] as const) {
        const { app, handled } = await closed('*', { allowlist });
        await expectAllowed(app, handled, c);
      }
      for (const c of [
        ['POST', '/settings'],
        ['POST', '/webhooksx'],
      ] as const) {
        const { app, handled } = await closed('*', { allowlist });
        await expectBlocked(app, handled, c, '*');
      }
    });

    it('`when` sees the raw (undecoded) parameters', async () => {
      const seen: unknown[] = [];
      const allowlist: AllowRule[] = [
        {
          method: 'POST',
          path: '/hooks/:name',
          when: (_req, params) => {
            seen.push(params.name);
            return params.name === 'deploy';
          },
        },
      ];
      const { app, handled } = await closed('*', { allowlist });
      expect((await request(app).post('/hooks/deploy')).status).toBe(200);
      expect((await request(app).post('/hooks/%64eploy')).status).toBe(503);
      expect(seen).toEqual(['deploy', '%64eploy']);
      expect(handled).toHaveLength(1);
    });
  });

  describe('under a relative URL root', () => {
    it.each<[string, Case]>([
      ['/gitlab', ['POST', '/gitlab/admin/sidekiq']],
      ['/gitlab', ['POST', '/gitlab/admin/sidekiq/']],
      ['/gitlab', ['GET', '/gitlab/admin/sidekiq']],
      ['/gitlab', ['POST', '/gitlab/api/graphql']],
      ['/gitlab', ['POST', '/gitlab/api/graphql/']],
      ['/gitlab', ['POST', '/GitLab/api/graphql']],
      ['/gitlab', ['POST', '/gitlab/root/rouge.git/git-upload-pack']],
      ['/gitlab/gitlab', ['POST', '/gitlab/gitlab/admin/sidekiq']],
      ['/gitlab/gitlab', ['POST', '/gitlab/gitlab/admin/sidekiq/']],
      ['/gitlab/gitlab', ['GET', '/gitlab/gitlab/admin/sidekiq/']],
      ['/gitlab/gitlab', ['POST', '/gitlab/gitlab/api/graphql']],
      ['/gitlab/gitlab', ['POST', '/gitlab/gitlab/api/graphql/']],
    ])('root %s: %j is allowed', async (relativeUrlRoot, c) => {
      const { app, handled } = await closed('*', { relativeUrlRoot });
      await expectAllowed(app, handled, c);
    });

    it.each<[string, Case]>([
      ['/gitlab', ['POST', '/gitlab/admin/sidekiqx']],
      ['/gitlab', ['POST', '/gitlab/api/graphql/x']],
      ['/gitlab', ['POST', '/gitlab/x/admin/sidekiq']],
      ['/gitlab', ['POST', '/gitlab/gitlab/admin/sidekiq']],
      ['/gitlab', ['POST', '/gitlabx/admin/sidekiq']],
      ['/gitlab/gitlab', ['POST', '/gitlab/gitlab/admin/sidekiqx']],
      ['/gitlab/gitlab', ['POST', '/gitlab/gitlab/api/graphql/x']],
    ])('root %s: %j is blocked', async (relativeUrlRoot, c) => {
      const { app, handled } = await closed('*', { relativeUrlRoot });
      const res = await send(app, c);
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
    });

    it.each(['/gitlab', '/gitlab/gitlab'])(
      'an app mounted at %s allows sidekiq and graphql without relativeUrlRoot',
      async (mount) => {
        const { app, store, handled } = guardedApp(express);
        await store.set('*', 'maintenance');
        const parent = express();
        parent.use(mount, app);
        parent.use((_req: IncomingMessage, res: ServerResponse) => {
          res.statusCode = 404;
          res.end();
        });
        for (const path of ['/admin/sidekiq', '/admin/sidekiq/', '/api/graphql', '/api/graphql/']) {
          expect((await request(parent).post(`${mount}${path}`)).status).toBe(200);
        }
        expect((await request(parent).post(`${mount}/admin/sidekiqx`)).status).toBe(503);
        expect((await request(parent).post(`${mount}/api/graphql/x`)).status).toBe(503);
        expect(handled).toHaveLength(4);
      },
    );
  });
});

type ExpressApp = ReturnType<ExpressFactory>;
