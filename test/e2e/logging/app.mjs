#!/usr/bin/env node
// An application process for the default-logging test (test/e2e/logging.test.ts): an Express 5
// app, an ioredis client, a RedisStateStore and the guard, from the built package imported by
// name, with the logging options of a user who leaves them alone.
//
//   REDIS_URL=redis://127.0.0.1:6379 node test/e2e/logging/app.mjs
//
// LOGGER=false passes `logger: false` to the guard and the store; NO_RESOLVE_ID=1 leaves out
// `resolveId` (a misconfiguration the guard warns of once, at start). Whatever the library logs
// goes to this process's stderr, untouched. Prints `ready <port>` on stdout once it listens and
// its store's knowledge is complete. Every request that passes the guard answers 201.

import express from 'express';
import { Redis } from 'ioredis';
import { namespaceReadOnly, RedisStateStore } from 'namespace-read-only';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const silent = process.env.LOGGER === 'false';

const redis = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 2000 });
redis.on('error', () => undefined);

const store = new RedisStateStore({ redis, ...(silent && { logger: false }) });
const guard = namespaceReadOnly({
  store,
  ...(process.env.NO_RESOLVE_ID !== '1' && { resolveId: () => null }),
  ...(silent && { logger: false }),
});

const app = express();
app.use(guard);
app.use((_req, res) => {
  res.status(201).json({ ok: true });
});

const server = app.listen(0, '127.0.0.1', async () => {
  const status = await store.ready();
  process.stdout.write(`ready ${server.address().port} ${status.mode}\n`);
});

process.on('SIGTERM', () => {
  server.close();
  void guard
    .close()
    .then(() => store.close())
    .finally(() => {
      redis.disconnect();
      process.exit(0);
    });
});
