#!/usr/bin/env node
// One application process of the propagation benchmark: Express 5 with the guard on a
// RedisStateStore, listening on 127.0.0.1, plus a probe that asks the same guard about a write
// (`POST /prop/proj/-/issues`) every millisecond and reports each change of its answer (admitted
// or refused with 503: what "obeyed" means here) to the parent over IPC, stamped with the
// wall-clock time the answer was known. The probe's period bounds the stamp's resolution (1 ms,
// plus whatever delays this process's event loop).
//
//   node bench/prop-app.mjs --redis-port P --mode push|ttl [--ttl MS]
//
// push: the quick start exactly: `new RedisStateStore({ redis: new Redis(url) })`, every option
//       at its default: the complete copy, kept current by push (the store turns keyspace
//       notifications on with CONFIG SET when the server has them off) and proven by the canary.
//       Refuses to start unless the store is `complete`.
// ttl:  `subscribe: false` and a short `ttl`: the degraded mode, changes seen only when a
//       per-key entry expires (for comparison).

import http from 'node:http';
import { parseArgs } from 'node:util';
import express from 'express';
import { Redis } from 'ioredis';
import { namespaceReadOnly, RedisStateStore } from 'namespace-read-only';
import parseurl from 'parseurl';
import { HOST, wallNow } from './lib/common.mjs';

const { values } = parseArgs({
  options: {
    'redis-port': { type: 'string' },
    mode: { type: 'string', default: 'push' },
    ttl: { type: 'string', default: '250' },
  },
});

const redis = new Redis(`redis://${HOST}:${values['redis-port']}`);
redis.on('error', () => undefined);
const store =
  values.mode === 'ttl'
    ? new RedisStateStore({ redis, subscribe: false, ttl: Number(values.ttl) })
    : new RedisStateStore({ redis });
const guard = namespaceReadOnly({ store });
const status = await store.ready();
const expected = values.mode === 'ttl' ? 'degraded' : 'complete';
if (status.mode !== expected) {
  throw new Error(`prop-app: expected mode ${expected}, got ${JSON.stringify(status)}`);
}

const app = express();
app.use(guard);
app.post('/:ns/:project/-/issues', (_req, res) => res.json({ ok: true }));
// Bench instrumentation (`-` names no namespace): the store's status, for the parent's checks.
app.get('/-/bench/store-status', (_req, res) => res.json({ status: store.status() }));
const server = http.createServer(app);
await new Promise((done) => server.listen(0, HOST, done));

// The probe: a write as the router would hand it to the guard, fresh each time.
const url = '/prop/proj/-/issues';
const parsed = parseurl({ url });
const headers = { 'content-type': 'application/json' };
let inFlight = false;
let blocked = null;
const response = () => ({
  statusCode: 200,
  headersSent: false,
  writableEnded: false,
  setHeader() {},
  end() {
    settle(true);
  },
});
function settle(isBlocked) {
  const at = wallNow();
  inFlight = false;
  if (isBlocked !== blocked) {
    blocked = isBlocked;
    process.send?.({ type: 'flip', blocked, at });
  }
}
function probe() {
  if (inFlight) return;
  inFlight = true;
  const req = { method: 'POST', url, originalUrl: url, baseUrl: '', headers, _parsedUrl: parsed };
  guard(req, response(), () => settle(false));
}
setInterval(probe, 1);
probe();
while (blocked === null) await new Promise((done) => setTimeout(done, 5));

console.log(
  `READY ${JSON.stringify({ port: server.address().port, pid: process.pid, blocked, mode: status.mode })}`,
);

const shutdown = () => {
  server.close();
  void guard
    .close()
    .then(() => store.close())
    .finally(() => {
      redis.disconnect();
      process.exit(0);
    });
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.on('disconnect', shutdown);
