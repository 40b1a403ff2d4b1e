import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { MemoryStateStore, namespaceReadOnly } from '../../src/index.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';

const DEFAULT_MESSAGE =
  'This namespace is temporarily in maintenance mode. Please try again later.';
const INSTANCE_MESSAGE = 'This site is undergoing maintenance. Please try again later.';

/** Collects a raw response from `socket` until its head and `Content-Length` body are in. */
function readRawResponse(port: number, head: string, partialBody: string) {
  return new Promise<{ status: number; headers: Record<string, string>; body: string }>(
    (resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.setEncoding('utf8');
      socket.on('error', reject);
      socket.on('connect', () => {
        // The body stream never ends: only part of the announced Content-Length is sent.
        socket.write(head + partialBody);
      });
      socket.on('data', (chunk: string) => {
        data += chunk;
        const end = data.indexOf('\r\n\r\n');
        if (end === -1) return;
        const [statusLine = '', ...lines] = data.slice(0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
        }
        const body = data.slice(end + 4);
        if (Buffer.byteLength(body) < Number(headers['content-length'] ?? 0)) return;
        socket.destroy();
        resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
      });
    },
  );
}

describe.each(expressVersions)('the blocked answer ($name)', ({ express }) => {
  async function inMaintenance(
    state: Parameters<MemoryStateStore['set']>[1] = 'maintenance',
    options: Parameters<typeof guardedApp>[1] = {},
    namespace = 'acme',
  ) {
    const store = new MemoryStateStore();
    await store.set(namespace, state);
    return guardedApp(express, { ...options, store });
  }

  describe('status and headers', () => {
    it('answers 503 with Retry-After from the retryAfter default (900), no-store, and the namespace', async () => {
      const { app, handled } = await inMaintenance();
      const res = await request(app).post('/acme/project/-/issues').send('title=x');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('900');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it('names the root namespace, lower-cased, for a nested and differently-cased path', async () => {
      const { app, handled } = await inMaintenance();
      const res = await request(app).put('/ACME/Team/Sub/project/-/edit');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(handled).toEqual([]);
    });

    it('uses the retryAfter option when the state has no until', async () => {
      const { app } = await inMaintenance('maintenance', { retryAfter: 120 });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('120');
    });

    it('derives Retry-After from a future until, in whole seconds', async () => {
      const until = new Date(Date.now() + 600_000);
      const { app } = await inMaintenance({ state: 'maintenance', until }, { retryAfter: 120 });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(503);
      const header = String(res.headers['retry-after']);
      expect(header).toMatch(/^\d+$/);
      const seconds = Number(header);
      // Not the fallback: about ten minutes, never more.
      expect(seconds).toBeGreaterThan(500);
      expect(seconds).toBeLessThanOrEqual(600);
    });

    it('accepts until as an ISO string', async () => {
      const until = new Date(Date.now() + 3_600_000).toISOString();
      const { app } = await inMaintenance({ state: 'maintenance', until });
      const res = await request(app).post('/acme/x');
      const seconds = Number(res.headers['retry-after']);
      expect(seconds).toBeGreaterThan(3_500);
      expect(seconds).toBeLessThanOrEqual(3_600);
    });

    it('falls back to the retryAfter option when until is in the past', async () => {
      const until = new Date(Date.now() - 60_000);
      const { app, handled } = await inMaintenance(
        { state: 'maintenance', until },
        { retryAfter: 77 },
      );
      const res = await request(app).post('/acme/x');
      // A past `until` does not end the maintenance; it only stops informing Retry-After.
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('77');
      expect(handled).toEqual([]);
    });

    it('falls back to 900 when until is in the past and no option is set', async () => {
      const until = new Date(Date.now() - 1_000);
      const { app } = await inMaintenance({ state: 'maintenance', until });
      const res = await request(app).post('/acme/x');
      expect(res.headers['retry-after']).toBe('900');
    });

    it('sends `*` in X-Namespace-Read-Only for instance maintenance', async () => {
      const { app, handled } = await inMaintenance('maintenance', {}, '*');
      const res = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('*');
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['retry-after']).toBe('900');
      expect(res.body).toEqual({
        message: INSTANCE_MESSAGE,
        namespace: '*',
        code: 'ERR_NSRO_INSTANCE_MAINTENANCE',
      });
      expect(handled).toEqual([]);
    });

    it('prefers the namespace state over the instance state (the more specific message)', async () => {
      const store = new MemoryStateStore();
      await store.set('*', { state: 'maintenance', message: 'Instance upgrade' });
      await store.set('acme', { state: 'maintenance', message: 'Moving acme' });
      const { app } = guardedApp(express, { store });
      const acme = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(acme.headers['x-namespace-read-only']).toBe('acme');
      expect(acme.body.message).toBe('Moving acme');
      const other = await request(app).post('/other/x').set('Accept', 'application/json');
      expect(other.headers['x-namespace-read-only']).toBe('*');
      expect(other.body.message).toBe('Instance upgrade');
    });
  });

  describe('body format', () => {
    it('answers JSON {message, namespace} when the request body is JSON', async () => {
      const { app } = await inMaintenance();
      const res = await request(app).post('/acme/x').send({ title: 'hello' });
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual({
        message: DEFAULT_MESSAGE,
        namespace: 'acme',
        code: 'ERR_NSRO_MAINTENANCE',
      });
    });

    it('answers JSON for a Git LFS request (application/vnd.git-lfs+json)', async () => {
      const { app, handled } = await inMaintenance();
      const res = await request(app)
        .post('/acme/proj.git/info/lfs/objects')
        .set('Content-Type', 'application/vnd.git-lfs+json')
        .set('Accept', 'application/vnd.git-lfs+json')
        .send('{"operation":"upload","objects":[]}');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(res.text)).toEqual({
        message: DEFAULT_MESSAGE,
        namespace: 'acme',
        code: 'ERR_NSRO_MAINTENANCE',
      });
      expect(handled).toEqual([]);
    });

    it('answers JSON when Accept prefers JSON', async () => {
      const { app } = await inMaintenance();
      const res = await request(app)
        .delete('/acme/x')
        .set('Accept', 'text/html;q=0.5, application/json');
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual({
        message: DEFAULT_MESSAGE,
        namespace: 'acme',
        code: 'ERR_NSRO_MAINTENANCE',
      });
    });

    it('answers JSON for an /api/ path even without JSON headers', async () => {
      const { app } = await inMaintenance();
      const res = await request(app)
        .post('/api/v4/projects/acme%2Fproj/issues')
        .type('form')
        .send('title=x');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual({
        message: DEFAULT_MESSAGE,
        namespace: 'acme',
        code: 'ERR_NSRO_MAINTENANCE',
      });
    });

    it('does not treat /apis or /api-docs as the API', async () => {
      const { app } = await inMaintenance('maintenance', {}, '*');
      for (const path of ['/apis/x', '/api-docs']) {
        const res = await request(app).post(path);
        expect(res.status).toBe(503);
        expect(res.headers['content-type']).toMatch(/^text\/plain/);
      }
    });

    it('includes until (ISO 8601) in the JSON body when the state has one', async () => {
      const until = new Date(Date.now() + 600_000);
      const { app } = await inMaintenance({
        state: 'maintenance',
        message: 'Moving to a new region',
        until,
      });
      const res = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(res.body).toEqual({
        message: 'Moving to a new region',
        namespace: 'acme',
        code: 'ERR_NSRO_MAINTENANCE',
        until: until.toISOString(),
      });
    });

    it('uses the state message, then the message option, then the default', async () => {
      const store = new MemoryStateStore();
      await store.set('acme', { state: 'maintenance', message: 'Own message' });
      await store.set('beta', 'maintenance');
      const { app } = guardedApp(express, { store, message: 'Option message' });
      const own = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(own.body.message).toBe('Own message');
      const option = await request(app).post('/beta/x').set('Accept', 'application/json');
      expect(option.body.message).toBe('Option message');
    });

    it('serves a self-contained HTML page naming the namespace to browsers', async () => {
      const { app, handled } = await inMaintenance({
        state: 'maintenance',
        message: 'Moving to a new region',
      });
      const res = await request(app)
        .post('/acme/project/-/issues')
        .type('form')
        .set('Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8')
        .send('issue[title]=x');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).toMatch(/^<!DOCTYPE html>/i);
      expect(res.text).toContain('<strong>acme</strong>');
      expect(res.text).toContain('Moving to a new region');
      // Self-contained: no external stylesheet, script or image.
      expect(res.text).not.toMatch(/<link\b|<script\b|<img\b|\bsrc=|\bhref=/i);
      expect(res.headers['retry-after']).toBe('900');
      expect(handled).toEqual([]);
    });

    it('names the site, not a namespace, on the HTML page for instance maintenance', async () => {
      const { app } = await inMaintenance('maintenance', {}, '*');
      const res = await request(app).post('/users/foo').set('Accept', 'text/html');
      expect(res.status).toBe(503);
      expect(res.text).toContain('This site');
      expect(res.text).toContain(INSTANCE_MESSAGE);
      expect(res.text).not.toContain('<strong>*</strong>');
    });

    it('answers plain text to clients that ask for neither (git, curl)', async () => {
      const { app } = await inMaintenance({ state: 'maintenance', message: 'Back soon' });
      const res = await request(app)
        .post('/acme/proj.git/git-receive-pack')
        .set('Content-Type', 'application/x-git-receive-pack-request')
        .set('Accept', 'application/x-git-receive-pack-result')
        .set('User-Agent', 'git/2.43.0')
        .send('0000');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.text).toBe('Back soon\n');
    });

    it('answers plain text when there is no Accept header at all', async () => {
      const { app } = await inMaintenance();
      const res = await request(app).patch('/acme/x').unset('Accept');
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.text).toBe(`${DEFAULT_MESSAGE}\n`);
    });

    it('sends a Content-Length matching the body in bytes (non-ASCII message)', async () => {
      const { app } = await inMaintenance({
        state: 'maintenance',
        message: 'Wartung läuft — bis später',
      });
      const res = await request(app).post('/acme/x');
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
      expect(res.text).toBe('Wartung läuft — bis später\n');
    });
  });

  describe('escaping what comes from the store', () => {
    const hostile = `<script>alert("x")</script> & it's 'quoted'`;

    it('escapes the message on the HTML page', async () => {
      const { app } = await inMaintenance({ state: 'maintenance', message: hostile });
      const res = await request(app).post('/acme/x').set('Accept', 'text/html');
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).not.toContain('<script>');
      expect(res.text).not.toContain('"x"');
      expect(res.text).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
      expect(res.text).toContain('&amp; it&#39;s &#39;quoted&#39;');
    });

    it('refuses a namespace name carrying markup, and never echoes it into the page', async () => {
      const name = '<b>"x"';
      const { app, handled, store } = await inMaintenance('maintenance');
      await expect(store.set(name, 'maintenance')).rejects.toThrow(TypeError);
      const res = await request(app)
        .post(`/${encodeURIComponent(name)}/project`)
        .set('Accept', 'text/html');
      expect(res.status).toBe(503);
      expect(handled).toEqual([]);
      expect(res.headers['x-namespace-read-only']).toBe('?');
      expect(res.text).not.toContain('<b>');
    });

    it('keeps the hostile message intact (and inert) in JSON and text answers', async () => {
      const { app } = await inMaintenance({ state: 'maintenance', message: hostile });
      const json = await request(app).post('/acme/x').set('Accept', 'application/json');
      expect(json.body.message).toBe(hostile);
      const text = await request(app).post('/acme/x');
      expect(text.headers['content-type']).toMatch(/^text\/plain/);
      expect(text.text).toBe(`${hostile}\n`);
    });
  });

  describe('writes only, and nothing behind the guard runs', () => {
    it.each(['POST', 'PUT', 'PATCH', 'DELETE', 'PROPFIND', 'MKCOL', 'LOCK'])(
      '%s is answered by the guard',
      async (method) => {
        const { app, handled } = await inMaintenance();
        const agent = request(app) as unknown as Record<string, (path: string) => request.Test>;
        const send = agent[method.toLowerCase()];
        expect(send).toBeTypeOf('function');
        const res = await send?.call(agent, '/acme/x');
        expect(res?.status).toBe(503);
        expect(res?.headers['x-namespace-read-only']).toBe('acme');
        expect(handled).toEqual([]);
      },
    );

    it.each(['GET', 'HEAD', 'OPTIONS'])('%s passes to the handler', async (method) => {
      const { app, handled } = await inMaintenance('maintenance', {}, '*');
      const agent = request(app);
      const res =
        method === 'GET'
          ? await agent.get('/acme/x')
          : method === 'HEAD'
            ? await agent.head('/acme/x')
            : await agent.options('/acme/x');
      expect(res.status).toBe(200);
      expect(res.headers['x-namespace-read-only']).toBeUndefined();
      expect(handled).toEqual([{ method, url: '/acme/x' }]);
    });

    it('answers a HEAD that overrides to a write with headers and no body', async () => {
      const { app, handled } = await inMaintenance();
      const res = await request(app).head('/acme/x').set('X-HTTP-Method-Override', 'DELETE');
      expect(res.status).toBe(503);
      expect(res.headers['x-namespace-read-only']).toBe('acme');
      expect(res.text ?? '').toBe('');
      expect(handled).toEqual([]);
    });

    it('never runs a body parser placed after the guard', async () => {
      const store = new MemoryStateStore();
      await store.set('acme', 'maintenance');
      const guard = namespaceReadOnly({ store });
      const reached: string[] = [];
      const app = express();
      app.use(guard);
      app.use(
        express.json({
          verify: () => {
            reached.push('verify');
          },
        }),
      );
      app.use((req: IncomingMessage, res: ServerResponse) => {
        reached.push(`handler ${req.url}`);
        res.end('ok');
      });
      const blocked = await request(app)
        .post('/acme/x')
        .send({ big: 'x'.repeat(10_000) });
      expect(blocked.status).toBe(503);
      expect(reached).toEqual([]);
      // Control: the parser and handler do run for a namespace that is writable.
      const open = await request(app).post('/other/x').send({ a: 1 });
      expect(open.status).toBe(200);
      expect(reached).toEqual(['verify', 'handler /other/x']);
    });

    it('answers without waiting for a request body that never ends', async () => {
      const { app, handled } = await inMaintenance();
      const server = createServer(app);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        const res = await readRawResponse(
          port,
          'POST /acme/proj/-/issues HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n',
          '{"title":"only the start of',
        );
        expect(res.status).toBe(503);
        expect(res.headers['x-namespace-read-only']).toBe('acme');
        expect(JSON.parse(res.body)).toEqual({
          message: DEFAULT_MESSAGE,
          namespace: 'acme',
          code: 'ERR_NSRO_MAINTENANCE',
        });
        expect(handled).toEqual([]);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('answers an unending body over a store that answers asynchronously', async () => {
      const memory = new MemoryStateStore();
      await memory.set('acme', 'maintenance');
      // No `peek`: the guard must go async and still not touch the body.
      const store = {
        get: (ns: string) => memory.get(ns),
        set: memory.set.bind(memory),
        delete: memory.delete.bind(memory),
      };
      const { app, handled } = guardedApp(express, { store });
      const server = createServer(app);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        const res = await readRawResponse(
          port,
          'PUT /acme/x HTTP/1.1\r\nHost: test\r\nContent-Length: 50000\r\n\r\n',
          'partial',
        );
        expect(res.status).toBe(503);
        expect(res.body).toBe(`${DEFAULT_MESSAGE}\n`);
        expect(handled).toEqual([]);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    });
  });
});
