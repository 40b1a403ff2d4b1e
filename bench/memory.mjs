#!/usr/bin/env node
// Heap held by a RedisStateStore cache filled with N distinct namespaces (default 100,000, the
// store's default `max`). Run with --expose-gc. The namespaces have no state in Redis (writable:
// the entries most requests create); names are `group-000001`... (12 characters).
//
//   node --expose-gc bench/memory.mjs --redis-port P [--count N]
//
// "before" is taken before the store is constructed, so the figure includes everything the
// store allocates for its cache (lru-cache preallocates its index arrays for `max` entries).
// heapUsed is the figure asked for; arrayBuffers (typed-array backing stores, outside the V8
// heap) is reported beside it.

import { parseArgs } from 'node:util';
import { RedisStateStore } from 'namespace-read-only';
import { connectDataClient } from './lib/redis.mjs';

const { values } = parseArgs({
  options: { 'redis-port': { type: 'string' }, count: { type: 'string', default: '100000' } },
});
const count = Number(values.count);
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');

function settle() {
  for (let i = 0; i < 4; i++) globalThis.gc();
  return process.memoryUsage();
}

const redis = await connectDataClient(values['redis-port']);
await redis.ping();

const before = settle();
const store = new RedisStateStore({ redis, subscribe: false, ttl: 600_000 });
const CHUNK = 1000;
for (let start = 0; start < count; start += CHUNK) {
  const reads = [];
  for (let i = start; i < Math.min(count, start + CHUNK); i++) {
    reads.push(store.get(`group-${String(i).padStart(6, '0')}`));
  }
  await Promise.all(reads);
}
const after = settle();
const cached = store.status().cached;
if (cached !== count) throw new Error(`memory: ${cached} namespaces cached, expected ${count}`);
// Still reachable here, so the GC above could not have taken it.
store.peek('group-000000');

const heapUsedBytes = after.heapUsed - before.heapUsed;
const arrayBuffersBytes = after.arrayBuffers - before.arrayBuffers;
console.log(
  JSON.stringify({
    count,
    cached,
    heapUsedBytes,
    arrayBuffersBytes,
    bytesPerNamespace: Math.round(heapUsedBytes / count),
    rssBytes: after.rss - before.rss,
  }),
);
await store.close();
redis.disconnect();
