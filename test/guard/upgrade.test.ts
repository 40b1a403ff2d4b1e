import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect as connectTcp } from 'node:net';
import type { Duplex } from 'node:stream';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  createBypassToken,
  type InflightWrites,
  MemoryStateStore,
  type NamespaceReadOnlyMiddleware,
  type NamespaceReadOnlyOptions,
  type NamespaceState,
  namespaceReadOnly,
  type StateInput,
  type StateStore,
  type UpgradeOptions,
} from '../../src/index.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * `guard.upgrade` with a real `ws` server and client: the server's 'upgrade' handler asks the
 * guard, and goes on with `wss.handleUpgrade` only when it says so, as the docs tell users to.
 */

/** A MemoryStateStore without `peek`: every state is read asynchronously. */
function asyncStore(): StateStore {
  const inner = new MemoryStateStore();
  return {
    get: (namespace) => inner.get(namespace),
    set: (namespace: string, state: StateInput) => inner.set(namespace, state),
    delete: (namespace) => inner.delete(namespace),
  };
}

const storeKinds = [
  { kind: 'memory store', make: (): StateStore => new MemoryStateStore() },
  { kind: 'asynchronous store', make: asyncStore },
];

interface Harness {
  readonly guard: NamespaceReadOnlyMiddleware;
  readonly base: string;
  /** What `guard.upgrade` resolved to, per upgrade, in order. */
  readonly answers: boolean[];
  /** The server side of each upgrade's socket, in order. */
  readonly sockets: Duplex[];
  write: UpgradeOptions['write'];
}

const servers: Server[] = [];
const guards: NamespaceReadOnlyMiddleware[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
  for (const guard of guards.splice(0)) await guard.close();
});

/** An Express app for HTTP, and beside it, on the same server, a WebSocket server. */
async function serve(options: NamespaceReadOnlyOptions = {}): Promise<Harness> {
  const guard = namespaceReadOnly({ logger: false, ...options });
  guards.push(guard);
  const app = express();
  app.use(guard);
  app.use((_req, res) => {
    res.status(201).json({ ok: true });
  });
  const server = createServer(app);
  servers.push(server);
  const wss = new WebSocketServer({ noServer: true });
  const harness: Harness = {
    guard,
    base: '',
    answers: [],
    sockets: [],
    write: true,
  };
  server.on('upgrade', async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    harness.sockets.push(socket);
    const ok = await guard.upgrade(req, socket, { write: harness.write });
    harness.answers.push(ok);
    if (!ok) return;
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send('welcome');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return Object.assign(harness, { base: `127.0.0.1:${port}` });
}

type Outcome =
  | { readonly opened: true }
  | {
      readonly opened: false;
      readonly status: number | undefined;
      readonly headers: IncomingMessage['headers'];
      readonly body: string;
    };

/** Opens a WebSocket to `path`: it opens (and gets the server's first message), or is refused. */
function connect(
  base: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${base}${path}`, { headers });
    ws.on('message', () => {
      ws.close();
      resolve({ opened: true });
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () =>
        resolve({ opened: false, status: res.statusCode, headers: res.headers, body }),
      );
    });
    ws.on('error', reject);
  });
}

function refused(outcome: Outcome) {
  if (outcome.opened) throw new Error('the upgrade was not refused');
  return { ...outcome, json: JSON.parse(outcome.body) as Record<string, unknown> };
}

describe.each(storeKinds)('guard.upgrade ($kind)', ({ make }) => {
  async function withAcmeIn(state: StateInput, options: NamespaceReadOnlyOptions = {}) {
    const store = make();
    await store.set('acme', state);
    return serve({ store, ...options });
  }

  it('refuses a write upgrade to a namespace in maintenance with the HTTP answer, and closes the socket', async () => {
    const h = await withAcmeIn('maintenance');
    const outcome = refused(await connect(h.base, '/acme/proj/-/terminal'));
    expect(outcome.status).toBe(503);
    expect(outcome.headers['retry-after']).toBe('900');
    expect(outcome.headers['cache-control']).toBe('no-store');
    expect(outcome.headers['x-namespace-read-only']).toBe('acme');
    expect(outcome.headers.connection).toBe('close');
    expect(outcome.json.code).toBe('ERR_NSRO_MAINTENANCE');
    // The same body as the HTTP answer to a JSON write to the same namespace.
    const http = await fetch(`http://${h.base}/acme/proj/-/issues`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(http.status).toBe(503);
    expect(outcome.json).toEqual(await http.json());
    expect(h.answers).toEqual([false]);
    const socket = h.sockets[0] as Duplex;
    if (!socket.destroyed) await once(socket, 'close');
    expect(socket.destroyed).toBe(true);
  });

  it('lets a write upgrade to a writable namespace through', async () => {
    const h = await serve({ store: make() });
    expect(await connect(h.base, '/acme/proj/-/terminal')).toEqual({ opened: true });
    expect(h.answers).toEqual([true]);
  });

  it('lets a write upgrade to another namespace through while acme is in maintenance', async () => {
    const h = await withAcmeIn('maintenance');
    expect(await connect(h.base, '/beta/proj/-/terminal')).toEqual({ opened: true });
  });

  it('lets a read upgrade (write: false, or no options) to a namespace in maintenance through', async () => {
    const h = await withAcmeIn('maintenance');
    h.write = false;
    expect(await connect(h.base, '/acme/proj/-/feed')).toEqual({ opened: true });
    h.write = undefined;
    expect(await connect(h.base, '/acme/proj/-/feed')).toEqual({ opened: true });
    expect(h.answers).toEqual([true, true]);
  });

  it('decides with a predicate of the request', async () => {
    const h = await withAcmeIn('maintenance');
    h.write = (req) => req.url?.endsWith('/-/terminal') === true;
    expect(refused(await connect(h.base, '/acme/proj/-/terminal')).status).toBe(503);
    expect(await connect(h.base, '/acme/proj/-/feed')).toEqual({ opened: true });
  });

  it.each([
    ['a numeric id without resolveId', '/api/v4/projects/42/terminal', 'ERR_NSRO_UNRESOLVABLE_ID'],
    ['an undecodable namespace', '/acme%ZZ/proj/-/terminal', 'ERR_NSRO_INVALID_NAMESPACE'],
  ])(
    'refuses a write upgrade to %s while something is in maintenance',
    async (_what, path, code) => {
      const h = await withAcmeIn('maintenance');
      const outcome = refused(await connect(h.base, path));
      expect(outcome.status).toBe(503);
      expect(outcome.headers['x-namespace-read-only']).toBe('?');
      expect(outcome.json.code).toBe(code);
    },
  );

  it('answers a state whose reason maps to 403 with 403 and no Retry-After', async () => {
    const h = await withAcmeIn(
      { state: 'maintenance', reason: 'archived', message: 'Archived.' },
      { statusFor: { archived: 403 } },
    );
    const outcome = refused(await connect(h.base, '/acme/proj/-/terminal'));
    expect(outcome.status).toBe(403);
    expect(outcome.headers['retry-after']).toBeUndefined();
    expect(outcome.json).toMatchObject({ message: 'Archived.', reason: 'archived' });
  });
});

/**
 * What only a store that answers at once can tell, as for HTTP: a read is decided without
 * waiting (with a store that must be asked, it passes), and "nothing is in maintenance" is known.
 */
describe('guard.upgrade (memory store only)', () => {
  it('refuses even a read upgrade to a frozen namespace, as it refuses a GET', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'frozen');
    const h = await serve({ store });
    h.write = false;
    const outcome = refused(await connect(h.base, '/acme/proj/-/feed'));
    expect(outcome.status).toBe(503);
    expect(outcome.json.code).toBe('ERR_NSRO_FROZEN');
  });

  it('lets a write upgrade to a numeric id through while nothing is in maintenance', async () => {
    const h = await serve();
    expect(await connect(h.base, '/api/v4/projects/42/terminal')).toEqual({ opened: true });
  });
});

describe('guard.upgrade and the operator controls', () => {
  it('lets a write upgrade through with a bypass token for its namespace, and only then', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const secret = 'a-secret-of-at-least-32-characters!!';
    const h = await serve({ store, bypass: { secret } });
    const token = createBypassToken({ secret, namespace: 'acme', ttl: 60_000 });
    const header = { 'x-namespace-read-only-bypass': token };
    expect(await connect(h.base, '/acme/proj/-/terminal', header)).toEqual({ opened: true });
    expect(refused(await connect(h.base, '/acme/proj/-/terminal')).status).toBe(503);
  });

  it('does not count an admitted upgrade as a write in flight for the fence', async () => {
    const inner = new MemoryStateStore();
    let counted: InflightWrites | undefined;
    const store: StateStore = {
      get: (namespace) => inner.get(namespace),
      set: (namespace: string, state: StateInput) => inner.set(namespace, state),
      delete: (namespace) => inner.delete(namespace),
      register(inflight) {
        counted = inflight;
        return { holdsLease: () => true, release: async () => {} };
      },
    };
    await store.set('beta', 'maintenance');
    const h = await serve({ store, fence: true });
    // The connection stays open: a fence waiting for it would wait as long.
    expect(await connect(h.base, '/acme/proj/-/terminal')).toEqual({ opened: true });
    expect(counted?.snapshot()).toEqual({ '*': 0 });
  });
});

describe('guard.upgrade on the wire', () => {
  it('answers in HTTP/1.1 and closes its side even when the client keeps its own open', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const h = await serve({ store });
    const [host = '', port = ''] = h.base.split(':');
    // Half-open allowed: the client never ends its side, so only the server can close the socket.
    const client = connectTcp({ host, port: Number(port), allowHalfOpen: true });
    let answer = '';
    client.setEncoding('utf8');
    client.on('data', (chunk: string) => {
      answer += chunk;
    });
    client.write(
      'GET /acme/proj/-/terminal HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    await once(client, 'end');
    expect(answer).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    const socket = h.sockets[0] as Duplex;
    if (!socket.destroyed) await once(socket, 'close');
    expect(socket.destroyed).toBe(true);
    client.destroy();
  });
});

describe('guard.upgrade when something goes wrong', () => {
  it('judges an upgrade as a write when its predicate answers anything but a boolean', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const h = await serve({ store });
    // An asynchronous predicate is not awaited: its promise is not `false`.
    h.write = (async () => false) as unknown as (req: IncomingMessage) => boolean;
    expect(refused(await connect(h.base, '/acme/proj/-/feed')).status).toBe(503);
  });

  it('judges an upgrade as a write when its predicate throws, and says so', async () => {
    const log = recordingLogger();
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const h = await serve({ store, logger: log.logger });
    h.write = () => {
      throw new Error('no session');
    };
    expect(refused(await connect(h.base, '/acme/proj/-/feed')).status).toBe(503);
    expect(log.of('error').map((e) => e.object.option)).toEqual(['upgrade write']);
  });

  it('judges an upgrade as a write when `write` is neither a boolean nor a function', async () => {
    const log = recordingLogger();
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const h = await serve({ store, logger: log.logger });
    h.write = 'yes' as unknown as boolean;
    expect(refused(await connect(h.base, '/acme/proj/-/feed')).status).toBe(503);
    const errors = log.of('error').map((e) => String((e.object.err as Error).message));
    expect(errors).toEqual([expect.stringContaining('upgrade option `write`')]);
  });

  it('refuses with ERR_NSRO_INTERNAL, never rejecting, when deciding throws', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const h = await serve({
      store,
      routes: {
        resolve() {
          throw new Error('bug');
        },
      },
    });
    const outcome = refused(await connect(h.base, '/acme/proj/-/terminal'));
    expect(outcome.status).toBe(503);
    expect(outcome.json.code).toBe('ERR_NSRO_INTERNAL');
    expect(h.answers).toEqual([false]);
  });

  it('refuses with ERR_NSRO_STORE_UNAVAILABLE when the state cannot be read', async () => {
    const store: StateStore = {
      get: (): Promise<NamespaceState | null> => Promise.reject(new Error('connection refused')),
      set: async () => {},
      delete: async () => {},
    };
    const h = await serve({ store });
    const outcome = refused(await connect(h.base, '/acme/proj/-/terminal'));
    expect(outcome.json.code).toBe('ERR_NSRO_STORE_UNAVAILABLE');
  });
});
