#!/usr/bin/env node
// One application server for the HTTP benchmarks: Express 5 on 127.0.0.1 with the same
// GitLab-shaped routes in every configuration, and in front of them
//
//   baseline      nothing (bare Express 5); `baseline-b` is a second, identical process
//   guard-memory  namespaceReadOnly() with its in-memory store; `frozen` is in maintenance
//   guard-redis   namespaceReadOnly({ store: new RedisStateStore({ redis }) }) on --redis-port,
//                 every option at its default, as in the quick start: the complete copy of every
//                 state, kept by push (the store turns keyspace notifications on itself) and
//                 proven by the canary; no migration fence (a guard registers only with
//                 `fence: true`). Refuses to start unless the store is `complete`.
//   guard-redis-degraded  the Redis store in its degraded mode (`keyspaceEvents: 'off'`: per-key
//                 reads, cached for `ttl`) with `timeout: 2000`, for the stampede (see
//                 redis-traffic.mjs): the only mode in which a request can cause a Redis read
//   rate-limit    express-rate-limit with its memory store (limit high enough never to refuse)
//   noop          one middleware that only calls next(): what any middleware layer costs
//
//   node bench/server.mjs <config> [--redis-port P] [--time-middleware]
//
// Prints `READY {"port":...,"pid":...}` once listening. SIGTERM/SIGINT exit through
// process.exit, so `node --cpu-prof bench/server.mjs ...` writes its profile.

import http from 'node:http';
import { parseArgs } from 'node:util';
import express from 'express';
import { rateLimit } from 'express-rate-limit';
import { namespaceReadOnly, RedisStateStore } from 'namespace-read-only';
import { connectDataClient } from './lib/redis.mjs';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'redis-port': { type: 'string' }, 'time-middleware': { type: 'boolean' } },
});
const config = positionals[0] ?? 'baseline';

const app = express();
app.set('etag', false);
app.set('x-powered-by', false);

let redis = null;
let guard = null;
let storeGets = 0;

let store = null;

// Bench instrumentation: `-` is a reserved top-level word, so this path names no namespace.
app.get('/-/bench/store-gets', (_req, res) => {
  res.json({ storeGets });
});
app.get('/-/bench/store-status', (_req, res) => {
  res.json({ status: store?.status() ?? null });
});
switch (config) {
  case 'baseline':
  case 'baseline-b': // a second, identical process: the A/A check of the method
    break;
  case 'guard-memory':
    guard = namespaceReadOnly();
    await guard.store.set('frozen', 'maintenance');
    break;
  case 'guard-redis':
  case 'guard-redis-degraded': {
    redis = await connectDataClient(values['redis-port']);
    const degraded = config === 'guard-redis-degraded';
    // `degraded`: per-key reads with a 2 s read budget instead of 100 ms, for the stampede that
    // holds Redis still.
    store = new RedisStateStore({
      redis,
      ...(degraded && { keyspaceEvents: 'off', timeout: 2000 }),
    });
    // Counts the requests that found no answer in the store without waiting (the guard calls
    // `get` only when the synchronous `peek` has none; the instance key `*` is not counted):
    // in a stampede on the degraded mode, every one of them waited for Redis. The complete
    // mode's `peek` answers for every namespace, so it never calls `get`.
    const get = store.get.bind(store);
    store.get = (namespace) => {
      if (namespace !== '*') storeGets++;
      return get(namespace);
    };
    guard = namespaceReadOnly({ store }); // no `fence: true`: nothing registers or heartbeats
    const status = await store.ready();
    const expected = degraded ? 'degraded' : 'complete';
    if (status.mode !== expected || !status.subscribed) {
      throw new Error(`${config}: expected mode ${expected}, got ${JSON.stringify(status)}`);
    }
    break;
  }
  case 'rate-limit':
    guard = rateLimit({ windowMs: 60_000, limit: 1_000_000_000 });
    break;
  case 'noop':
    guard = (_req, _res, next) => next();
    break;
  default:
    throw new Error(`unknown configuration ${config}`);
}
// --time-middleware: the time from entering the configuration's middleware (or, for the
// baseline, a middleware that only calls next) until it calls next(), summed, for the mean cost
// per request inside a real server under load. Not used for the rps figures.
const timing = { n: 0, ns: 0n };
function timed(middleware) {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    middleware(req, res, (error) => {
      timing.ns += process.hrtime.bigint() - start;
      timing.n++;
      next(error);
    });
  };
}
app.get('/-/bench/middleware-time', (_req, res) => {
  res.json({ n: timing.n, ns: String(timing.ns) });
});
if (values['time-middleware']) app.use(timed(guard ?? ((_req, _res, next) => next())));
else if (guard !== null) app.use(guard);
app.use(express.json());

const ok = (req, res) => {
  res.json({ ok: true, ns: req.params.ns ?? null, title: req.body?.title ?? null });
};
app.get('/:ns/:project/-/issues', ok);
app.post('/:ns/:project/-/issues', ok);
app.post('/:ns/:project.git/git-upload-pack', ok);
app.post('/api/v4/projects/:id/issues', ok);

const server = http.createServer(app);
server.keepAliveTimeout = 60_000;
await new Promise((done) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, done));
const address = server.address();
console.log(`READY ${JSON.stringify({ port: address.port, pid: process.pid, config })}`);

let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  server.closeAllConnections?.();
  server.close();
  void Promise.resolve(guard?.close?.())
    .catch(() => undefined)
    .finally(() => {
      redis?.disconnect();
      process.exit(0);
    });
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
