#!/usr/bin/env node
// One application process of the migration-fence proof (test/fence/run.ts starts several): its
// own Express 5 app, its own ioredis clients and the built package, imported by name (inside this
// repository `namespace-read-only` resolves to dist/ through the package's self-reference).
//
//   REDIS_URL=redis://127.0.0.1:6379 HEARTBEAT_TTL=1000 node test/fence/app.mjs
//
// Prints `ready <port> <pid>` on stdout once it listens, its store is subscribed and its fence
// registration exists in Redis. Routes:
//
//   POST /:ns/write[?ms=N]  behind the guard: takes a random 50–500 ms (or N), then commits with
//                           `RPUSH commits "<ns> <pid>"`. Redis runs commands one at a time, so the
//                           list's order is the global order of commits. Answers 201.
//   GET /-/busy             write handlers running, per namespace (before the guard).
//   GET /-/hold/:ns         starts a job `guard.runWrite(ns, …)` that runs until /-/release; 202
//                           once admitted, 503 when refused.
//   GET /-/release          lets held jobs finish (each then commits like a write).

import express from 'express';
import { Redis } from 'ioredis';
import { NamespaceReadOnlyError, namespaceReadOnly, RedisStateStore } from 'namespace-read-only';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const heartbeatTtl = Number(process.env.HEARTBEAT_TTL ?? 1000);

const clientOptions = { maxRetriesPerRequest: 1, connectTimeout: 2000 };
// The guard's client, and a second one standing in for the application's database.
const redis = new Redis(url, clientOptions);
const db = new Redis(url, clientOptions);
for (const client of [redis, db]) client.on('error', () => undefined);

const store = new RedisStateStore({ redis, heartbeatTtl });
// The fence is opt-in: without `fence: true` the process would not register, and no wait would count it.
const guard = namespaceReadOnly({ store, fence: true });

const busy = new Map();
const held = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function commit(namespace) {
  await db.rpush('commits', `${namespace} ${process.pid}`);
}

const app = express();

app.get('/-/busy', (_req, res) => {
  res.json(Object.fromEntries(busy));
});

app.get('/-/hold/:ns', (req, res) => {
  const { ns } = req.params;
  let admitted = false;
  guard
    .runWrite(ns, async () => {
      admitted = true;
      res.status(202).json({ held: ns });
      await new Promise((resolve) => held.add(resolve));
      await commit(ns);
    })
    .catch((error) => {
      if (admitted) return;
      const refused = error instanceof NamespaceReadOnlyError;
      res.status(refused ? 503 : 500).json({ error: String(error) });
    });
});

app.get('/-/release', (_req, res) => {
  const n = held.size;
  for (const release of held) release();
  held.clear();
  res.json({ released: n });
});

app.use(guard);

app.post('/:ns/write', async (req, res) => {
  const { ns } = req.params;
  busy.set(ns, (busy.get(ns) ?? 0) + 1);
  try {
    const ms = req.query.ms === undefined ? 50 + Math.random() * 450 : Number(req.query.ms);
    await sleep(ms);
    await commit(ns);
    res.status(201).json({ committed: ns });
  } catch (error) {
    res.status(500).json({ error: String(error) });
  } finally {
    busy.set(ns, busy.get(ns) - 1);
  }
});

const server = app.listen(0, '127.0.0.1', async () => {
  await store.ready();
  // Registered (and so holding its lease) before it takes traffic.
  const mine = `:${process.pid}:`;
  const registered = async () => {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${store.prefix}proc:*`);
      if (keys.some((key) => key.includes(mine))) return true;
      cursor = next;
    } while (cursor !== '0');
    return false;
  };
  while (!(await registered())) await sleep(20);
  process.stdout.write(`ready ${server.address().port} ${process.pid}\n`);
});

async function shutdown() {
  server.closeAllConnections();
  server.close();
  await guard.close();
  redis.disconnect();
  db.disconnect();
  process.exit(0);
}
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
// Never outlive the test that started us.
process.stdin.on('end', () => void shutdown());
process.stdin.resume();
