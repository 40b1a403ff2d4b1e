import { type IncomingMessage, METHODS } from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { MemoryStateStore, namespaceReadOnly } from '../../src/index.js';
import {
  hasWriteOverrideHeader,
  hasWriteOverrideQuery,
  isReadMethod,
} from '../../src/request/method.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';

type Request = IncomingMessage & { originalMethod?: string; body?: unknown };

/**
 * Method classification: GET, HEAD, OPTIONS and TRACE are reads; every other method Node accepts
 * is a write; a read carrying a method-override signal that names a write is a write.
 */

const READS = ['GET', 'HEAD', 'OPTIONS', 'TRACE'] as const;

/** Every method Node's parser accepts that is not a read (CONNECT never reaches Express). */
const WRITES = METHODS.filter((m) => !(READS as readonly string[]).includes(m) && m !== 'CONNECT');

/** A request with any method, including the WebDAV verbs supertest has no shortcut for. */
function send(app: Parameters<typeof request>[0], method: string, path: string) {
  return new request.Test(app, method, path);
}

describe('isReadMethod', () => {
  it.each(READS)('%s is a read', (method) => {
    expect(isReadMethod(method)).toBe(true);
  });

  it.each(WRITES)('%s is a write', (method) => {
    expect(isReadMethod(method)).toBe(false);
  });

  it('covers the verbs the contract names', () => {
    for (const verb of [
      'POST',
      'PUT',
      'PATCH',
      'DELETE',
      'PROPFIND',
      'PROPPATCH',
      'MKCOL',
      'COPY',
      'MOVE',
      'LOCK',
      'UNLOCK',
      'SEARCH',
      'PURGE',
      'REPORT',
      'MKACTIVITY',
      'LINK',
      'UNLINK',
    ]) {
      expect(WRITES).toContain(verb);
    }
  });

  it.each(['get', 'Get', '', 'GET ', 'FOO'])(
    '%j is not a read (exact, upper-case names only)',
    (m) => {
      expect(isReadMethod(m)).toBe(false);
    },
  );

  it('undefined is not a read', () => {
    expect(isReadMethod(undefined)).toBe(false);
  });
});

describe('hasWriteOverrideHeader', () => {
  it.each([
    [{ 'x-http-method-override': 'POST' }, true],
    [{ 'x-http-method': 'DELETE' }, true],
    [{ 'x-method-override': 'PUT' }, true],
    [{ 'x-http-method-override': 'patch' }, true],
    [{ 'x-http-method-override': 'PROPFIND' }, true],
    [{ 'x-http-method-override': 'NOT-A-METHOD' }, true],
    [{ 'x-http-method-override': 'GET, POST' }, true],
    [{ 'x-http-method-override': ' get ,DELETE ' }, true],
    [{ 'x-http-method-override': ['GET', 'PATCH'] }, true],
    [{ 'x-http-method-override': 'GET' }, false],
    [{ 'x-http-method-override': 'get' }, false],
    [{ 'x-http-method': 'HEAD, OPTIONS, TRACE' }, false],
    [{ 'x-http-method-override': '' }, false],
    [{ 'x-http-method-override': ' , ' }, false],
    [{ 'x-http-method-overrides': 'POST' }, false],
    [{ 'x-override': 'POST' }, false],
    [{}, false],
  ])('%j -> %s', (headers, expected) => {
    expect(hasWriteOverrideHeader(headers)).toBe(expected);
  });
});

describe('hasWriteOverrideQuery', () => {
  it.each([
    ['_method=POST', true],
    ['_method=delete', true],
    ['a=1&_method=PUT&b=2', true],
    ['%5Fmethod=DELETE', true],
    ['%5fmethod=DELETE', true],
    ['_%6Dethod=PATCH', true],
    ['%5F%6D%65%74%68%6F%64=PATCH', true],
    ['_METHOD=POST', true],
    ['_method=GET&_method=POST', true],
    ['_method=POST&_method=GET', true],
    ['_method=GET,POST', true],
    ['_method=GET%2CPOST', true],
    ['_method[]=POST', true],
    ['_method%5B%5D=POST', true],
    ['_method=%50OST', true],
    ['_method=GET', false],
    ['_method=get', false],
    ['_method=HEAD&_method=OPTIONS', false],
    ['_method=', false],
    ['_method', false],
    ['method=POST', false],
    ['x_method=POST', false],
    ['_methods=POST', false],
    ['q=_method%3DPOST', false],
    ['q=_method=POST', false],
    ['a=1', false],
    ['', false],
  ])('?%s -> %s', (search, expected) => {
    expect(hasWriteOverrideQuery(search)).toBe(expected);
  });
});

describe.each(expressVersions)('methods through the guard ($name)', ({ express }) => {
  async function inMaintenance(namespace = 'acme') {
    const setup = guardedApp(express);
    await setup.store.set(namespace, 'maintenance');
    return setup;
  }

  it.each(READS)('%s passes for a namespace in maintenance', async (method) => {
    const { app, handled } = await inMaintenance();
    const res = await send(app, method, '/acme/proj/-/issues');
    expect(res.status).toBe(200);
    expect(res.headers['x-namespace-read-only']).toBeUndefined();
    expect(handled).toEqual([{ method, url: '/acme/proj/-/issues' }]);
  });

  it.each(WRITES)('%s is blocked for a namespace in maintenance', async (method) => {
    const { app, handled } = await inMaintenance();
    const res = await send(app, method, '/acme/proj/-/issues');
    expect(res.status).toBe(503);
    expect(res.headers['x-namespace-read-only']).toBe('acme');
    expect(handled).toEqual([]);
  });

  it.each(WRITES)('%s passes for a namespace that is writable', async (method) => {
    const { app, handled } = await inMaintenance('other');
    const res = await send(app, method, '/acme/proj/-/issues');
    expect(res.status).toBe(200);
    expect(handled).toEqual([{ method, url: '/acme/proj/-/issues' }]);
  });

  describe('method-override signals on a read', () => {
    it.each([
      ['X-HTTP-Method-Override', 'POST'],
      ['X-HTTP-Method', 'DELETE'],
      ['X-Method-Override', 'PUT'],
      ['X-HTTP-Method-Override', 'patch'],
      ['X-HTTP-Method-Override', 'PROPFIND'],
      ['X-HTTP-Method-Override', 'GET, POST'],
    ])('GET with %s: %s is blocked', async (header, value) => {
      const { app, handled } = await inMaintenance();
      const res = await request(app).get('/acme/proj').set(header, value);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it('a repeated override header is blocked when any value names a write', async () => {
      const { app, handled } = await inMaintenance();
      // Two header lines (supertest sends an array as such); Node joins them as "GET, DELETE".
      const twoLines = ['GET', 'DELETE'] as unknown as string;
      const res = await request(app).get('/acme/proj').set('X-HTTP-Method-Override', twoLines);
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
    });

    it.each(['HEAD', 'OPTIONS', 'TRACE'])(
      '%s with an override naming a write is blocked',
      async (method) => {
        const { app, handled } = await inMaintenance();
        const res = await send(app, method, '/acme/proj').set('X-HTTP-Method-Override', 'DELETE');
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('acme');
        expect(handled).toEqual([]);
      },
    );

    it.each([
      '_method=POST',
      '_method=delete',
      'page=2&_method=PUT',
      '%5Fmethod=PATCH',
      '%5fmethod=PATCH',
      '_method=GET&_method=POST',
      '_method=GET,POST',
      '_method=GET%2CDELETE',
      '_method[]=POST',
      '_METHOD=POST',
    ])('GET ?%s is blocked', async (search) => {
      const { app, handled } = await inMaintenance();
      const res = await request(app).get(`/acme/proj?${search}`);
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it.each([
      ['header', { 'X-HTTP-Method-Override': 'GET' }, ''],
      ['header', { 'X-HTTP-Method': 'head' }, ''],
      ['header', { 'X-Method-Override': 'OPTIONS' }, ''],
      ['query', {}, '?_method=GET'],
      ['query', {}, '?%5Fmethod=get'],
      ['query', {}, '?_method=GET&_method=HEAD'],
      ['look-alike query key', {}, '?method=POST'],
      ['look-alike query key', {}, '?x_method=POST'],
      ['look-alike query value', {}, '?q=_method%3DPOST'],
    ])(
      'GET with a %s override naming a read stays a read (%j %s)',
      async (_kind, headers, search) => {
        const { app, handled } = await inMaintenance();
        const res = await request(app).get(`/acme/proj${search}`).set(headers);
        expect(res.status).toBe(200);
        expect(handled).toHaveLength(1);
      },
    );

    it('an override to a write on a writable namespace passes', async () => {
      const { app, handled } = await inMaintenance('other');
      const res = await request(app)
        .get('/acme/proj?_method=DELETE')
        .set('X-HTTP-Method-Override', 'POST');
      expect(res.status).toBe(200);
      expect(handled).toHaveLength(1);
    });

    it('an overridden GET on a path naming no namespace follows the instance state', async () => {
      const { app, store, handled } = await inMaintenance();
      const open = await request(app).get('/users/sign_up?_method=POST');
      expect(open.status).toBe(200);
      await store.set('*', 'maintenance');
      const closed = await request(app).get('/users/sign_up?_method=POST');
      expect(closed.status).toBe(503);
      expect(closed.headers['x-namespace-read-only']).toBe('*');
      expect(handled).toHaveLength(1);
    });
  });

  describe('a method override applied before the guard', () => {
    /**
     * What `method-override` does when mounted first with a form-body getter: `req.method`
     * becomes the `_method` it names, and the wire method is kept in `req.originalMethod`.
     */
    function overriddenApp(state: string | null, path = '/acme/proj/-/issues') {
      const store = new MemoryStateStore();
      const guard = namespaceReadOnly({ store });
      const handled: { method: string; url: string }[] = [];
      const app = express();
      app.use(express.urlencoded({ extended: false }));
      app.use((req: Request, _res: unknown, next: () => void) => {
        const override = (req.body as Record<string, unknown> | undefined)?._method;
        if (typeof override === 'string') {
          req.originalMethod = req.originalMethod ?? req.method;
          req.method = override.toUpperCase();
        }
        next();
      });
      app.use(guard);
      app.use((req: Request, res: { end: (body: string) => void }) => {
        handled.push({ method: req.method ?? '', url: req.url ?? '' });
        res.end('handled');
      });
      const ready = state === null ? Promise.resolve() : store.set('acme', state as 'maintenance');
      const post = async (body: string, url = path) => {
        await ready;
        return request(app).post(url).type('form').send(body);
      };
      return { post, handled };
    }

    it('a POST turned into a GET is still a write: refused for a namespace in maintenance', async () => {
      const { post, handled } = overriddenApp('maintenance');
      const res = await post('_method=GET');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it('a POST turned into a GET reaches the handler as a GET when the namespace is writable', async () => {
      const { post, handled } = overriddenApp(null);
      expect((await post('_method=GET')).status).toBe(200);
      expect(handled).toEqual([{ method: 'GET', url: '/acme/proj/-/issues' }]);
    });

    it('an allowlisted POST route does not let through a POST the router routes as a GET', async () => {
      // `POST /acme/proj/-/compare` is allowlisted; as a GET it reaches whatever answers GET there.
      const { post, handled } = overriddenApp('maintenance');
      expect((await post('_method=GET', '/acme/proj/-/compare')).status).toBe(503);
      expect((await post('x=1', '/acme/proj/-/compare')).status).toBe(200);
      expect(handled).toEqual([{ method: 'POST', url: '/acme/proj/-/compare' }]);
    });
  });
});
