import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import posix from 'node:path/posix';
import querystring from 'node:querystring';
import express5 from 'express';
import express4 from 'express4';
import parseurl from 'parseurl';
import qs from 'qs';
import {
  MemoryStateStore,
  type NamespaceReadOnlyMiddleware,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
} from '../../../src/index.js';
import {
  BYPASS_SECRETS,
  FROZEN,
  IDS,
  type IdKind,
  type InstanceState,
  MAINTENANCE,
  MOUNT,
  REASONS,
  REPORT,
  RESERVED,
  SCHEDULED,
  STATUS_FOR,
  WRITE_ROUTES,
} from './world.js';

/**
 * The victim: a GitLab-shaped Express app whose handlers write down what the router handed them
 * (the route, the decoded params, the method) and nothing else. The oracle judges from those
 * records alone, so it is independent of how the guard resolves anything.
 *
 * What a handler "writes to" is modelled generously, as an application or a layer behind it
 * might read its params: the root of the decoded path, case-folded (`toLowerCase`, NFKC), and
 * also after trimming, after cutting a `;` parameter, after turning `\` into `/`, after decoding
 * again, and after resolving dot segments. A guard that lets a write through must be right under
 * every one of those readings.
 */

export type Flavor = 'express 5' | 'express 4';

/** Where the guard sits and where the app is mounted. */
export type Deployment =
  /** `app.use(guard)` in front of the routes. */
  | 'top'
  /** `parent.use(guard({ relativeUrlRoot: '/gitlab' }))`, `parent.use('/gitlab', app)`. */
  | 'front'
  /** `parent.use('/gitlab', app)`, with `app.use(guard())` inside the mounted app. */
  | 'inside';

export const DEPLOYMENTS: readonly Deployment[] = ['top', 'front', 'inside'];

/** One handler run, as the victim saw it. */
export interface Handled {
  readonly route: string;
  /** The method Node parsed. */
  readonly method: string;
  /** The method after the victim's method-override middleware. */
  readonly effective: string;
  /** A write: a non-read method, an override naming one, or a push discovery. */
  readonly write: boolean;
  /** A route that legitimately runs in maintenance (git fetch, LFS batch, compare, sign-in...). */
  readonly allowlisted: boolean;
  /** The decoded paths the handler looks namespaces up by (`[]` for instance routes). */
  readonly paths: readonly string[];
  /** Every case-folded root namespace those paths may be read as. */
  readonly namespaces: readonly string[];
}

export class Recorder {
  private readonly runs = new Map<string, Handled[]>();
  add(id: string, handled: Handled): void {
    const list = this.runs.get(id);
    if (list === undefined) this.runs.set(id, [handled]);
    else list.push(handled);
  }
  take(id: string): Handled[] {
    const list = this.runs.get(id) ?? [];
    this.runs.delete(id);
    return list;
  }
}

export const FUZZ_ID_HEADER = 'x-fuzz-id';

const READS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const KNOWN_METHODS = new Set(http.METHODS);

type Next = (error?: unknown) => void;
interface Req extends IncomingMessage {
  params: Record<string, string | string[] | undefined>;
  query: unknown;
  originalUrl: string;
  [WRITE]?: boolean;
  [ORIGINAL_METHOD]?: string;
}
type Handler = (req: Req, res: ServerResponse, next: Next) => void;
interface RouterLike {
  use(...args: unknown[]): unknown;
  all(path: string[], handler: Handler): unknown;
  get(path: string[], handler: Handler): unknown;
  post(path: string[], handler: Handler): unknown;
  put(path: string[], handler: Handler): unknown;
}
interface AppLike extends RouterLike {
  (req: IncomingMessage, res: ServerResponse): void;
}
interface ExpressLike {
  (): AppLike;
  Router(): RouterLike;
}

const WRITE = Symbol('fuzz.write');
const ORIGINAL_METHOD = Symbol('fuzz.method');

const EXPRESS: Record<Flavor, ExpressLike> = {
  'express 5': express5 as unknown as ExpressLike,
  'express 4': express4 as unknown as ExpressLike,
};

/** Route paths in both syntaxes: path-to-regexp 8 (Express 5) and 0.1 (Express 4). */
interface Paths {
  readonly e5: string[];
  readonly e4: string[];
}

/** Decoded params, the same shape on both majors: named params, and wildcards as segment lists. */
interface Params {
  readonly named: Readonly<Record<string, string>>;
  /** Wildcard captures in order; Express 4 decodes a capture whole, so `%2F` splits here too. */
  readonly wild: readonly (readonly string[])[];
}

interface RouteDef {
  readonly name: string;
  readonly method: 'all' | 'get' | 'post' | 'put';
  readonly paths: Paths;
  /** The decoded paths whose namespace the handler acts on; `[]` for instance routes. */
  readonly namespacePaths: (p: Params) => string[][];
  readonly allowlisted?: boolean;
  /** GitLab's grammar: a `-` segment ends the namespace path, so such a route does not match. */
  readonly repoIn?: (p: Params) => readonly string[];
  readonly pushDiscovery?: boolean;
  /** A read that writes (an export that enqueues a job): the guard's `writeRoutes` names it. */
  readonly writes?: boolean;
}

function params(req: Req, flavor: Flavor): Params {
  const named: Record<string, string> = {};
  const wild: string[][] = [];
  for (const [key, value] of Object.entries(req.params)) {
    if (value === undefined) continue;
    if (flavor === 'express 5') {
      const m = /^w(\d)$/.exec(key);
      if (m !== null) wild[Number(m[1])] = Array.isArray(value) ? value : [value];
      else if (typeof value === 'string') named[key] = value;
    } else if (/^\d$/.test(key)) {
      wild[Number(key)] = typeof value === 'string' ? value.split('/') : [];
    } else if (typeof value === 'string') {
      named[key] = value;
    }
  }
  for (let i = 0; i < wild.length; i++) wild[i] ??= [];
  return { named, wild };
}

const w = (p: Params, i: number): string[] => [...(p.wild[i] ?? [])];
const n = (p: Params, key: string): string => p.named[key] ?? '';

/** `{/*rest}` in Express 5 is `''` and `/*` in Express 4. */
function withRest(base5: string, base4: string, i: number): Paths {
  return { e5: [`${base5}{/*w${i}}`], e4: [base4, `${base4}/*`] };
}

const instance = (): string[][] => [];

/** GitLab's REST API resolves `:id` as a number when it looks like one, else as a full path. */
function idPaths(kind: IdKind, id: string): string[][] {
  const out: string[][] = [];
  const numbers = new Set<number>();
  if (/^-?\d+$/.test(id)) numbers.add(Number(id)); // GitLab: INTEGER_ID_REGEX, then find_by(id)
  const asNumber = Number(id); // JavaScript coercion, as `Number(req.params.id)` reads it
  if (id.trim() !== '' && Number.isSafeInteger(asNumber)) numbers.add(asNumber);
  const parsed = Number.parseInt(id, 10); // `parseInt(req.params.id)`
  if (!Number.isNaN(parsed)) numbers.add(parsed);
  for (const num of numbers) {
    const full = IDS[kind].get(num);
    if (full !== undefined) out.push([full]);
  }
  if (!/^-?\d+$/.test(id)) out.push([id]);
  return out;
}

const API_KINDS: Record<string, IdKind> = {
  projects: 'project',
  groups: 'group',
  namespaces: 'namespace',
};

function routes(): RouteDef[] {
  const defs: RouteDef[] = [
    // Instance routes GitLab lets through in maintenance.
    {
      name: 'graphql',
      method: 'post',
      paths: both('/api/graphql'),
      namespacePaths: instance,
      allowlisted: true,
    },
    ...['sign_in', 'sign_out'].map(
      (word): RouteDef => ({
        name: `users-${word}`,
        method: 'post',
        paths: both(`/users/${word}`),
        namespacePaths: instance,
        allowlisted: true,
      }),
    ),
    // The sign-in page (a GET GitLab's allowlist names, so that it opens in a frozen state).
    {
      name: 'users-sign_in page',
      method: 'get',
      paths: both('/users/sign_in'),
      namespacePaths: instance,
      allowlisted: true,
    },
    {
      name: 'sso',
      method: 'all',
      paths: { e5: ['/users/auth/*w0'], e4: ['/users/auth/*'] },
      namespacePaths: instance,
      allowlisted: true,
    },
    ...['/oauth/token', '/jwt/auth', '/admin/session', '/admin/session/destroy'].map(
      (path): RouteDef => ({
        name: path,
        method: 'post',
        paths: both(path),
        namespacePaths: instance,
        allowlisted: true,
      }),
    ),
    {
      name: 'sidekiq',
      method: 'all',
      paths: withRest('/admin/sidekiq', '/admin/sidekiq', 0),
      namespacePaths: instance,
      allowlisted: true,
    },
  ];
  // Top-level words that never name a namespace.
  for (const word of RESERVED) {
    // `api` and `groups` are registered after their routers, so they only catch the rest.
    defs.push({
      name: `reserved ${word}`,
      method: 'all',
      paths:
        word === '-'
          ? { e5: ['/-{/*w0}'], e4: ['/-', '/-/*'] }
          : { e5: [`/${word}{/*w0}`], e4: [`/${word}`, `/${word}/*`] },
      namespacePaths: instance,
    });
  }
  defs.push(
    // `POST /:ns/:project/-/compare` writes nothing (GitLab allowlists it).
    {
      name: 'compare',
      method: 'post',
      paths: { e5: ['/*w0/-/compare'], e4: ['/*/-/compare'] },
      namespacePaths: (p) => [w(p, 0)],
      repoIn: (p) => w(p, 0),
      allowlisted: true,
    },
    // `GET /:ns/:project/-/export` starts an export: a read that writes (`writeRoutes`). Express
    // runs it for HEAD too.
    {
      name: 'export',
      method: 'get',
      paths: { e5: ['/*w0/-/export'], e4: ['/*/-/export'] },
      namespacePaths: (p) => [w(p, 0)],
      writes: true,
    },
    // Every other `/-/` route of a group or project: issues, new files, settings... all writes.
    {
      name: 'dash',
      method: 'all',
      paths: { e5: ['/*w0/-/*w1'], e4: ['/*/-/*'] },
      namespacePaths: (p) => [w(p, 0)],
    },
    // Git over HTTP and LFS.
    {
      name: 'git-upload-pack',
      method: 'post',
      paths: git('git-upload-pack'),
      namespacePaths: (p) => [w(p, 0)],
      repoIn: (p) => w(p, 0),
      allowlisted: true,
    },
    {
      name: 'lfs-batch',
      method: 'post',
      paths: git('info/lfs/objects/batch'),
      namespacePaths: (p) => [w(p, 0)],
      repoIn: (p) => w(p, 0),
      allowlisted: true,
    },
    {
      name: 'git-receive-pack',
      method: 'post',
      paths: git('git-receive-pack'),
      namespacePaths: (p) => [w(p, 0)],
    },
    {
      name: 'info-refs',
      method: 'get',
      paths: git('info/refs'),
      namespacePaths: (p) => [w(p, 0)],
      pushDiscovery: true,
    },
    {
      name: 'lfs-locks',
      method: 'all',
      paths: {
        e5: ['/*w0/:project.git/info/lfs/locks{/*w1}'],
        e4: ['/*/:project.git/info/lfs/locks', '/*/:project.git/info/lfs/locks/*'],
      },
      namespacePaths: (p) => [w(p, 0)],
    },
    {
      name: 'lfs-upload',
      method: 'put',
      paths: {
        e5: ['/*w0/:project.git/gitlab-lfs/objects/*w1'],
        e4: ['/*/:project.git/gitlab-lfs/objects/*'],
      },
      namespacePaths: (p) => [w(p, 0)],
    },
    // The namespace catch-all: `app.all`, every method.
    {
      name: 'namespace',
      method: 'all',
      paths: withRest('/:ns', '/:ns', 0),
      namespacePaths: (p) => [[n(p, 'ns'), ...w(p, 0)]],
    },
  );
  return defs;
}

function both(path: string): Paths {
  return { e5: [path], e4: [path] };
}

function git(tail: string): Paths {
  return { e5: [`/*w0/:project.git/${tail}`], e4: [`/*/:project.git/${tail}`] };
}

/** The REST API, on a router mounted at `/api/v4` and `/api/v3` as GitLab's Grape API is. */
function apiRoutes(): RouteDef[] {
  const defs: RouteDef[] = [
    {
      name: 'api internal',
      method: 'all',
      paths: withRest('/internal', '/internal', 0),
      namespacePaths: instance,
      allowlisted: true,
    },
  ];
  for (const [word, kind] of Object.entries(API_KINDS)) {
    defs.push({
      name: `api ${word}`,
      method: 'all',
      paths: withRest(`/${word}/:id`, `/${word}/:id`, 0),
      namespacePaths: (p) => idPaths(kind, n(p, 'id')),
    });
  }
  defs.push({
    name: 'api other',
    method: 'all',
    paths: { e5: ['/*w0'], e4: ['/*'] },
    namespacePaths: instance,
  });
  return defs;
}

/** `/groups/<full path>/...`, on its own router as GitLab's group scope is. */
function groupRoutes(): RouteDef[] {
  return [
    {
      name: 'groups',
      method: 'all',
      paths: withRest('/:group', '/:group', 0),
      namespacePaths: (p) => [[n(p, 'group'), ...w(p, 0)]],
    },
  ];
}

/** Every reading of a decoded path's root namespace a layer behind the router might make. */
export function namespaceReadings(path: readonly string[]): string[] {
  const joined = path.join('/');
  const slashed = joined.replace(/\\/g, '/');
  const out = new Set<string>();
  for (const full of [joined, slashed, decodeAgain(slashed)]) {
    for (const candidate of [full, posix.normalize(full)]) {
      const root = candidate.split('/').find((c) => c !== '');
      if (root === undefined) continue;
      for (const r of [root, root.trim(), root.split(';')[0] ?? '']) {
        if (r === '') continue;
        out.add(r.toLowerCase());
        out.add(r.normalize('NFKC').toLowerCase());
      }
    }
  }
  return [...out];
}

function decodeAgain(value: string): string {
  let current = value;
  for (let i = 0; i < 3 && current.includes('%'); i++) {
    try {
      current = decodeURIComponent(current);
    } catch {
      break;
    }
  }
  return current;
}

/**
 * Method override as applications do it, generously: the three override headers (every
 * comma-separated value), and `_method` in the query as Express's own query parser, Node's
 * `querystring` (what `method-override` uses) and `qs` (Express 4's parser, and Express 5's with
 * `query parser: extended`) read it. The first known method wins the routing; any write among
 * them makes the request a write.
 */
function overrideMiddleware(req: Req, _res: ServerResponse, next: Next): void {
  const original = req.method ?? '';
  const values: string[] = [];
  for (const name of ['x-http-method-override', 'x-http-method', 'x-method-override']) {
    const header = req.headers[name];
    if (typeof header === 'string') values.push(...header.split(','));
  }
  for (const query of queries(req)) collectStrings(query._method, values);
  const methods = values.map((v) => v.trim().toUpperCase()).filter((m) => KNOWN_METHODS.has(m));
  req[ORIGINAL_METHOD] = original;
  req[WRITE] = !READS.has(original) || methods.some((m) => !READS.has(m));
  const first = methods[0];
  if (first !== undefined) req.method = first;
  next();
}

function queries(req: Req): Record<string, unknown>[] {
  const raw = rawQuery(req);
  const out: Record<string, unknown>[] = [];
  if (typeof req.query === 'object' && req.query !== null)
    out.push(req.query as Record<string, unknown>);
  if (raw !== null) {
    out.push(querystring.parse(raw) as Record<string, unknown>);
    out.push(qs.parse(raw) as Record<string, unknown>);
  }
  return out;
}

/** The raw query as Express reads it (`parseurl`: the fast path, or `url.parse` with `#`). */
function rawQuery(req: Req): string | null {
  const query = parseurl(req)?.query;
  return typeof query === 'string' ? query : null;
}

function collectStrings(value: unknown, out: string[]): void {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) collectStrings(v, out);
  else if (typeof value === 'object' && value !== null)
    for (const v of Object.values(value)) collectStrings(v, out);
}

function pushDiscovery(req: Req): boolean {
  const values: string[] = [];
  for (const query of queries(req)) collectStrings(query.service, values);
  return values.some((v) => v.trim().toLowerCase() === 'git-receive-pack');
}

function handler(def: RouteDef, flavor: Flavor, recorder: Recorder): Handler {
  return function victimHandler(req, res, next) {
    const p = params(req, flavor);
    // GitLab's path grammar: `-` ends a namespace path, so `.../-/...git/git-upload-pack` is not
    // the git route; the router moves on to the next match.
    if (def.repoIn?.(p).some((segment) => segment.split('/').includes('-'))) return next();
    const paths = def.namespacePaths(p);
    const method = req[ORIGINAL_METHOD] ?? req.method ?? '';
    const write =
      req[WRITE] === true ||
      def.writes === true ||
      (def.pushDiscovery === true && pushDiscovery(req));
    const handled: Handled = {
      route: def.name,
      method,
      effective: req.method ?? '',
      write,
      allowlisted: def.allowlisted === true,
      paths: paths.map((path) => path.join('/')),
      namespaces: [...new Set(paths.flatMap(namespaceReadings))],
    };
    const id = req.headers[FUZZ_ID_HEADER];
    if (typeof id === 'string') recorder.add(id, handled);
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(handled));
  };
}

function register(router: RouterLike, defs: RouteDef[], flavor: Flavor, recorder: Recorder): void {
  for (const def of defs) {
    const paths = flavor === 'express 5' ? def.paths.e5 : def.paths.e4;
    router[def.method](paths, handler(def, flavor, recorder));
  }
}

/** The GitLab-shaped app, with `guard` (if any) as its first middleware. */
function victimApp(
  flavor: Flavor,
  recorder: Recorder,
  guard: NamespaceReadOnlyMiddleware | null,
): AppLike {
  const express = EXPRESS[flavor];
  const app = express();
  if (guard !== null) app.use(guard);
  app.use(overrideMiddleware);
  const api = express.Router();
  register(api, apiRoutes(), flavor, recorder);
  const groups = express.Router();
  register(groups, groupRoutes(), flavor, recorder);
  // `/api/graphql` and the instance routes come first; the API and group scopes are routers
  // mounted with `app.use`, as GitLab's are.
  const [graphql, ...rest] = routes();
  if (graphql !== undefined) register(app, [graphql], flavor, recorder);
  // Geo replication (v4 only) runs in maintenance, like the internal API.
  register(
    app,
    [
      {
        name: 'api geo',
        method: 'all',
        paths: withRest('/api/v4/geo_replication', '/api/v4/geo_replication', 0),
        namespacePaths: instance,
        allowlisted: true,
      },
    ],
    flavor,
    recorder,
  );
  app.use(['/api/v4', '/api/v3'], api);
  app.use('/groups', groups);
  register(app, rest, flavor, recorder);
  return app;
}

export function resolveId(kind: IdKind, id: string): string | null {
  return IDS[kind].get(Number(id)) ?? null;
}

/** Which victim: one of the instance states, or the same app with no guard at all. */
export type World = InstanceState | 'unguarded';

export interface Target {
  readonly flavor: Flavor;
  readonly deployment: Deployment;
  readonly world: World;
  readonly port: number;
}

export interface Victims {
  readonly recorder: Recorder;
  readonly targets: readonly Target[];
  /** The victim of this Express major, deployment and world (default: instance state none). */
  port(flavor: Flavor, deployment: Deployment, world?: World): number;
  close(): Promise<void>;
}

/** The world's states, in a store of their own, with the instance (`*`) in `instance`. */
async function worldStore(instance: InstanceState): Promise<MemoryStateStore> {
  const store = new MemoryStateStore();
  const set = (ns: string, state: 'maintenance' | 'frozen' | 'report') => {
    const reason = REASONS[ns];
    return store.set(ns, reason === undefined ? state : { state, reason });
  };
  for (const ns of MAINTENANCE) await set(ns, 'maintenance');
  for (const ns of FROZEN) await set(ns, 'frozen');
  for (const ns of REPORT) await set(ns, 'report');
  for (const [ns, { state, startsAt }] of Object.entries(SCHEDULED)) {
    await store.set(ns, { state, startsAt });
  }
  if (instance !== 'none') await store.set('*', instance);
  return store;
}

/**
 * One server per Express major, deployment and instance state (each instance state with its
 * own store), plus one per Express major and deployment with no guard: the router's own answer,
 * which the oracle asks when it must know where a refused request would have gone.
 */
export async function startVictims(
  flavors: readonly Flavor[],
  instances: readonly InstanceState[] = ['none'],
): Promise<Victims> {
  const recorder = new Recorder();
  const servers: Server[] = [];
  const targets: Target[] = [];
  const worlds: World[] = [...instances, 'unguarded'];
  for (const world of worlds) {
    const options: NamespaceReadOnlyOptions | null =
      world === 'unguarded'
        ? null
        : {
            store: await worldStore(world),
            resolveId,
            bypass: { secret: [...BYPASS_SECRETS] },
            signal: true,
            statusFor: { ...STATUS_FOR },
            writeRoutes: [...WRITE_ROUTES],
          };
    for (const flavor of flavors) {
      for (const deployment of DEPLOYMENTS) {
        const app = deploymentApp(flavor, deployment, recorder, options);
        const server = http.createServer(app);
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        const address = server.address();
        if (address === null || typeof address === 'string') throw new Error('no port');
        servers.push(server);
        targets.push({ flavor, deployment, world, port: address.port });
      }
    }
  }
  return {
    recorder,
    targets,
    port(flavor, deployment, world = 'none') {
      const t = targets.find(
        (x) => x.flavor === flavor && x.deployment === deployment && x.world === world,
      );
      if (t === undefined) throw new Error(`no victim for ${flavor} ${deployment} ${world}`);
      return t.port;
    },
    async close() {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.closeAllConnections();
              s.close(() => resolve());
            }),
        ),
      );
    },
  };
}

/** The deployment's app, guarded with `options` (`null`: not guarded). */
function deploymentApp(
  flavor: Flavor,
  deployment: Deployment,
  recorder: Recorder,
  options: NamespaceReadOnlyOptions | null,
): AppLike {
  const express = EXPRESS[flavor];
  const guard = (extra: NamespaceReadOnlyOptions = {}) =>
    options === null ? null : namespaceReadOnly({ ...options, ...extra });
  switch (deployment) {
    case 'top':
      return victimApp(flavor, recorder, guard());
    case 'front': {
      const parent = express();
      const outer = guard({ relativeUrlRoot: MOUNT });
      if (outer !== null) parent.use(outer);
      parent.use(MOUNT, victimApp(flavor, recorder, null));
      return parent;
    }
    case 'inside': {
      const parent = express();
      parent.use(MOUNT, victimApp(flavor, recorder, guard()));
      return parent;
    }
  }
}
