// The middleware's cost inside a real Express server under load: each configuration's server
// started with --time-middleware (bench/server.mjs), loaded with POSTs to a writable namespace,
// and asked for the summed time from entering the middleware until it called next(). The
// baseline times a middleware that only calls next(): the measurement's own floor.
//
// The in-process micro-benchmark runs the guard in a hot loop on small objects; here it meets
// real IncomingMessage/ServerResponse objects between everything else a request does, which is
// what the end-to-end ratios feel.

import { join } from 'node:path';
import { load, SCENARIOS } from './http.mjs';
import { BENCH_DIR, round, startNode } from './lib/common.mjs';

const CONFIGS = [
  ['baseline', 'noop'],
  ['guard-memory', 'guardMemory'],
  ['guard-redis', 'guardRedis'],
  ['rate-limit', 'rateLimitMemory'],
];

async function middlewareTime(port) {
  const res = await fetch(`http://127.0.0.1:${port}/-/bench/middleware-time`);
  const { n, ns } = await res.json();
  return { n, ns: Number(ns) };
}

/** `{ noop, guardMemory, guardRedis, rateLimitMemory }`, each `{ nsPerRequest, requests }`. */
export async function runInServer(redis, { duration, warmup, connections }) {
  const scenario = SCENARIOS.find((s) => s.name === 'guardMemoryWriteWarm');
  const out = {};
  for (const [config, name] of CONFIGS) {
    const server = await startNode(join(BENCH_DIR, 'server.mjs'), [
      config,
      '--redis-port',
      String(redis.port),
      '--time-middleware',
    ]);
    try {
      await load(server.info.port, scenario, { duration: warmup, connections });
      const before = await middlewareTime(server.info.port);
      const run = await load(server.info.port, scenario, { duration, connections });
      const after = await middlewareTime(server.info.port);
      const n = after.n - before.n;
      out[name] = {
        nsPerRequest: n > 0 ? round((after.ns - before.ns) / n, 1) : Number.NaN,
        requests: n,
        rps: round(run.rps),
        statuses: run.statuses,
      };
    } finally {
      await server.stop();
    }
  }
  return out;
}
