import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  MemoryStateStore,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
} from '../../src/index.js';
import { type ExpressFactory, expressVersions } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * Wherever the guard is mounted, the namespace comes from the whole path the application
 * received: router mounts are not removed, a sub-app's own mount is. A mount the path cannot be
 * measured against is refused, never opened. Real Express 4 and 5, `acme` in maintenance.
 */

type App = ReturnType<ExpressFactory>;
type Guard = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A guard with `acme` in maintenance, and a handler that records every request it serves. */
async function world(options: NamespaceReadOnlyOptions = {}) {
  const store = new MemoryStateStore();
  await store.set('acme', 'maintenance');
  const log = recordingLogger();
  const guard = namespaceReadOnly({ ...options, store, logger: log.logger });
  const handled: string[] = [];
  const handler: Handler = (req, res) => {
    handled.push(`${req.method} ${(req as { originalUrl?: string }).originalUrl}`);
    res.end('ok');
  };
  return { store, guard, handler, handled, log };
}

interface Mount {
  readonly name: string;
  readonly options?: NamespaceReadOnlyOptions;
  readonly build: (express: ExpressFactory, guard: Guard, handler: Handler) => App;
  readonly method: 'put' | 'post';
  /** Writes to `acme` that reach the handler without the guard. */
  readonly acme: (express4: boolean) => string[];
  /** A write to `beta` (not in maintenance) and a read of `acme`, both served. */
  readonly beta: (express4: boolean) => string[];
  readonly read: string;
}

const MOUNTS: Mount[] = [
  {
    name: "app.use('/api/v4', guard)",
    build: (express, guard, handler) => {
      const app = express();
      app.use('/api/v4', guard);
      app.all('/api/v4/projects/:id', handler);
      return app;
    },
    method: 'put',
    acme: () => ['/api/v4/projects/acme%2Fproj', '/API/V4/projects/acme%2Fproj'],
    beta: () => ['/api/v4/projects/beta%2Fproj', '/API/V4/projects/beta%2Fproj'],
    read: '/api/v4/projects/acme%2Fproj',
  },
  {
    name: "app.use('/api', guard)",
    build: (express, guard, handler) => {
      const app = express();
      app.use('/api', guard);
      app.all('/api/v4/projects/:id', handler);
      return app;
    },
    method: 'put',
    acme: () => ['/api/v4/projects/acme%2Fproj'],
    beta: () => ['/api/v4/projects/beta%2Fproj'],
    read: '/api/v4/projects/acme%2Fproj',
  },
  {
    name: "api.use(guard); app.use('/api/v4', api) with api a Router",
    build: (express, guard, handler) => {
      const api = express.Router();
      api.use(guard);
      api.all('/namespaces/:id', handler);
      const app = express();
      app.use('/api/v4', api);
      return app;
    },
    method: 'put',
    acme: () => ['/api/v4/namespaces/acme', '/Api/V4/namespaces/ACME'],
    beta: () => ['/api/v4/namespaces/beta'],
    read: '/api/v4/namespaces/acme',
  },
  {
    name: "gitlab.use(guard); app.use('/gitlab', gitlab) with gitlab a sub-app",
    build: subApp,
    method: 'post',
    acme: () => ['/gitlab/acme/proj/issues', '/GitLab/acme/proj/issues'],
    beta: () => ['/gitlab/beta/proj/issues', '/gitlab/gitlab/proj/issues'],
    read: '/gitlab/acme/proj/issues',
  },
  {
    name: 'the same sub-app, and relativeUrlRoot /gitlab as well',
    options: { relativeUrlRoot: '/gitlab' },
    build: subApp,
    method: 'post',
    acme: () => ['/gitlab/acme/proj/issues'],
    beta: () => ['/gitlab/beta/proj/issues'],
    read: '/gitlab/acme/proj/issues',
  },
  {
    name: "outer.use('/gitlab', mid); mid.use('/gitlab', app), guard in app",
    build: nestedSubApps,
    method: 'post',
    // Express 4 swallows one doubled slash after each mount; Express 5 does not route these.
    acme: (express4) => [
      '/gitlab/gitlab/acme/proj/issues',
      ...(express4 ? ['/gitlab//gitlab/acme/proj/issues', '/GITLAB//Gitlab/acme/proj/issues'] : []),
    ],
    beta: (express4) => [
      '/gitlab/gitlab/beta/proj/issues',
      ...(express4 ? ['/gitlab//gitlab/beta/proj/issues'] : []),
    ],
    read: '/gitlab/gitlab/acme/proj/issues',
  },
];

function subApp(express: ExpressFactory, guard: Guard, handler: Handler): App {
  const gitlab = express();
  gitlab.use(guard);
  gitlab.all('/:ns/:proj/issues', handler);
  const app = express();
  app.use('/gitlab', gitlab);
  return app;
}

function nestedSubApps(express: ExpressFactory, guard: Guard, handler: Handler): App {
  const app = express();
  app.use(guard);
  app.all('/:ns/:proj/issues', handler);
  const mid = express();
  mid.use('/gitlab', app);
  const outer = express();
  outer.use('/gitlab', mid);
  return outer;
}

describe.each(expressVersions)('the guard under mounts ($name)', ({ name, express }) => {
  const express4 = name === 'express 4';

  describe.each(MOUNTS)('$name', (mount) => {
    it('refuses every write to acme, in maintenance, before the handler', async () => {
      const { guard, handler, handled } = await world(mount.options);
      const app = mount.build(express, guard, handler);
      for (const path of mount.acme(express4)) {
        const res = await request(app)[mount.method](path);
        expect(res.status, path).toBe(503);
        expect(res.headers['x-namespace-read-only'], path).toBe('acme');
      }
      expect(handled).toEqual([]);
    });

    it('passes writes to beta and reads of acme', async () => {
      const { guard, handler, handled } = await world(mount.options);
      const app = mount.build(express, guard, handler);
      const writes = mount.beta(express4);
      for (const path of writes) {
        expect((await request(app)[mount.method](path)).status, path).toBe(200);
      }
      expect((await request(app).get(mount.read)).status).toBe(200);
      expect(handled).toHaveLength(writes.length + 1);
    });
  });

  describe('a doubled slash between two sub-app mounts', () => {
    it(`is routed to the inner app by Express 4 only (${name})`, async () => {
      // No guard: what the router itself does with the path.
      const params: string[] = [];
      const app = nestedSubApps(
        express,
        (_req, _res, next) => next(),
        (req, res) => {
          params.push(String((req as unknown as { params: { ns: string } }).params.ns));
          res.end('ok');
        },
      );
      const res = await request(app).post('/gitlab//gitlab/acme/proj/issues');
      expect(res.status).toBe(express4 ? 200 : 404);
      expect(params).toEqual(express4 ? ['acme'] : []);
    });

    it('after the last mount is an empty segment, refused whatever the state', async () => {
      const { store, guard, handler, handled } = await world();
      await store.set('acme', 'writable');
      const app = nestedSubApps(express, guard, handler);
      const res = await request(app).post('/gitlab/gitlab//acme/proj/issues');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('?');
      expect(handled).toEqual([]);
    });
  });

  describe.each([
    ['an array', ['/a1', '/a2'], '/a2'],
    ['a RegExp', /^\/re/, '/re'],
    ['a pattern with a parameter', '/t/:tenant', '/t/one'],
  ] as const)('a sub-app mounted with %s', (_kind, mountpath, prefix) => {
    async function mountedSubApp() {
      const w = await world();
      const sub = express();
      sub.use(w.guard);
      sub.use(w.handler);
      const app = express();
      app.use(mountpath as string | RegExp | string[], sub);
      return { ...w, app };
    }

    it('refuses a write to acme, in maintenance, and says why', async () => {
      const { app, handled, log } = await mountedSubApp();
      const res = await request(app).post(`${prefix}/acme/proj/issues`);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('?');
      expect(handled).toEqual([]);
      expect(log.warned()).toHaveLength(1);
      expect(log.warned()[0]?.object).toMatchObject({
        reason: 'invalid-namespace',
        detail: 'mount',
      });
    });

    it('refuses a read that opens a push, and passes other reads', async () => {
      const { app, handled } = await mountedSubApp();
      const push = `${prefix}/acme/proj.git/info/refs?service=git-receive-pack`;
      expect((await request(app).get(push)).status).toBe(503);
      expect(handled).toEqual([]);
      expect((await request(app).get(`${prefix}/acme/proj.git/info/refs`)).status).toBe(200);
      expect((await request(app).get(`${prefix}/acme/proj/-/issues?page=2`)).status).toBe(200);
      expect(handled).toHaveLength(2);
    });
  });
});
