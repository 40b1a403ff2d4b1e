#!/usr/bin/env node
// Heap held by a RedisStateStore's complete copy of N states (default 100,000): N namespaces IN
// MAINTENANCE in Redis, loaded by a store with the default options. Run with --expose-gc.
//
//   node --expose-gc bench/memory.mjs --redis-port P [--count N] [--variant plain|ttl|json]
//
// The states are written first, as an operator's tooling would (SET of the state key plus SADD
// to the index, pipelined in batches), under a prefix of their own (`nsro-mem:`), and deleted
// at the end. Names are `group-000001`... (12 characters). The variant says what each key holds:
//
//   plain  `maintenance`, no TTL: every entry shares one parsed state (the replica interns
//          parsed states per raw value)
//   ttl    `maintenance` with a key TTL of an hour: each entry has a state of its own (with its
//          `expiresAt`) and is also in the set of states that can run out
//   json   a JSON object with a message naming the namespace: every raw value distinct, so
//          nothing is shared
//
// Three heap readings, each after full garbage collections: before any store exists; after an
// EMPTY store (a prefix with no state) has started and finished its first sync (what any store
// costs: its connections, its per-key cache's preallocated arrays, timers); and after the store
// under test has loaded the N states (`ready()`, then mode `complete` with `states` === N).
// `heapUsedBytes` is the store under test alone (third minus second reading); `bytesPerState`
// divides it by N; `emptyStoreBytes` is the fixed cost. Transients of the load (the load
// script's reply, the SCAN's key list) are gone by then. arrayBuffers (typed-array backing
// stores, outside the V8 heap) is reported beside heapUsed.
//
// Also reported: what the load cost Redis (INFO commandstats, before and after the store under
// test started): the load reads the index in batches of 1,000 (SSCAN, then one short read script
// per batch, so Redis is never held for the whole load), and every process runs it when it starts
// and every `resyncInterval`.

import { parseArgs } from 'node:util';
import { RedisStateStore } from 'namespace-read-only';
import { connectDataClient } from './lib/redis.mjs';

const { values } = parseArgs({
  options: {
    'redis-port': { type: 'string' },
    count: { type: 'string', default: '100000' },
    variant: { type: 'string', default: 'plain' },
  },
});
const count = Number(values.count);
const variant = values.variant;
if (!['plain', 'ttl', 'json'].includes(variant)) throw new Error(`--variant: unknown ${variant}`);
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');

const PREFIX = 'nsro-mem:';
const EMPTY_PREFIX = 'nsro-mem-empty:';
const BATCH = 5000;
const name = (i) => `group-${String(i).padStart(6, '0')}`;

/**
 * Full collections with turns of the event loop between them: what a finished command leaves
 * (its promise, the client's reply buffers) is released only once the loop has turned.
 */
async function settle() {
  for (let i = 0; i < 4; i++) {
    await new Promise((done) => setTimeout(done, 20));
    globalThis.gc();
  }
  return process.memoryUsage();
}

/** `{ command: { calls, usec } }` from INFO commandstats. */
async function commandStats(redis) {
  const out = {};
  for (const line of (await redis.info('commandstats')).split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m !== null) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}

async function clear(redis, prefix) {
  for (;;) {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length === 0) return;
    for (let i = 0; i < keys.length; i += BATCH) await redis.unlink(...keys.slice(i, i + BATCH));
  }
}

/** What `ready()` resolved with for the last store loaded: the first sync may end before the load. */
let firstSync = null;

/** Polls until the store holds `states` states in the complete mode (the first sync may end degraded on a slow load). */
async function loaded(store, states, timeoutMs = 60_000) {
  const first = await store.ready();
  firstSync = { mode: first.mode, cause: first.cause, states: first.states };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = store.status();
    if (status.mode === 'complete' && status.states === states) return status;
    if (Date.now() > deadline) {
      throw new Error(`memory: store not loaded: ${JSON.stringify(status)}, expected ${states}`);
    }
    await new Promise((done) => setTimeout(done, 20));
  }
}

const redis = await connectDataClient(values['redis-port']);
await clear(redis, PREFIX);
await clear(redis, EMPTY_PREFIX);

const writeStart = performance.now();
for (let start = 0; start < count; start += BATCH) {
  const pipeline = redis.pipeline();
  const names = [];
  for (let i = start; i < Math.min(count, start + BATCH); i++) {
    const ns = name(i);
    names.push(ns);
    const key = `${PREFIX}state:${ns}`;
    if (variant === 'plain') pipeline.set(key, 'maintenance');
    else if (variant === 'ttl') pipeline.set(key, 'maintenance', 'PX', 3_600_000);
    else {
      pipeline.set(
        key,
        JSON.stringify({ state: 'maintenance', message: `Migrating ${ns} to the new cluster` }),
      );
    }
  }
  pipeline.sadd(`${PREFIX}index`, ...names);
  const replies = await pipeline.exec();
  const failed = replies?.find(([error]) => error !== null);
  if (failed !== undefined) throw failed[0];
}
const writeMs = performance.now() - writeStart;

const before = await settle();
/**
 * A logger that only counts each store's degradations (`warn` lines with a `cause`): the empty
 * store runs beside the loading one, so this tells whether that load disturbed another process's
 * store (a load script keeps Redis from answering its canary).
 */
const degraded = { empty: [], store: [] };
const counting = (into) => ({
  warn: (fields) => {
    if (typeof fields?.cause === 'string') into.push(fields.cause);
  },
  error() {},
  info() {},
  debug() {},
  trace() {},
  fatal() {},
});
const empty = new RedisStateStore({
  redis,
  prefix: EMPTY_PREFIX,
  logger: counting(degraded.empty),
});
await loaded(empty, 0);
const middle = await settle();
const statsBefore = await commandStats(redis);
const loadStart = performance.now();
const store = new RedisStateStore({ redis, prefix: PREFIX, logger: counting(degraded.store) });
const status = await loaded(store, count);
const loadMs = performance.now() - loadStart;
const statsAfter = await commandStats(redis);
const spent = (command) => {
  const a = statsAfter[command] ?? { calls: 0, usec: 0 };
  const b = statsBefore[command] ?? { calls: 0, usec: 0 };
  return { calls: a.calls - b.calls, ms: Math.round((a.usec - b.usec) / 100) / 10 };
};
const after = await settle();
// Both still reachable here, so the GCs above could not have taken them.
if (store.peek(name(0))?.state !== 'maintenance' || empty.peek(name(0)) !== null) {
  throw new Error('memory: the stores do not answer as loaded');
}
if (store.anyClosed() !== true) throw new Error('memory: anyClosed() is not true');

const heapUsedBytes = after.heapUsed - middle.heapUsed;
await store.close();
await empty.close();
await clear(redis, PREFIX);
redis.disconnect();
console.log(
  JSON.stringify({
    count,
    variant,
    states: status.states,
    mode: status.mode,
    heapUsedBytes,
    bytesPerState: Math.round(heapUsedBytes / count),
    arrayBuffersBytes: after.arrayBuffers - middle.arrayBuffers,
    emptyStoreBytes: middle.heapUsed - before.heapUsed,
    emptyStoreArrayBuffersBytes: middle.arrayBuffers - before.arrayBuffers,
    rssBytes: after.rss - before.rss,
    writeMs: Math.round(writeMs),
    loadMs: Math.round(loadMs),
    // Redis's own time for the load: the batched read scripts (EVAL calls) and the SCAN for keys
    // the index lacks (many short calls).
    redisLoad: { eval: spent('eval'), scan: spent('scan') },
    // `ready()` resolves when the first sync ends, complete or not, within max(2 s, 2 x
    // canaryInterval): a load that takes longer ends it degraded, complete only later.
    firstSync,
    // Causes of each store's degradations during the run (none is the answer on a quiet machine).
    degraded,
  }),
);
