// Redis traffic caused by the guard, counted by the server itself (INFO commandstats):
// commands per request in steady state on the Redis store's complete mode (warm, and churn:
// requests naming namespaces the server has never seen), and the reads a stampede of concurrent
// writes to one cold namespace causes (none in the complete mode; one in the degraded mode).

import http from 'node:http';
import { CHURN_NAMESPACES, load, SCENARIOS } from './http.mjs';
import { HOST, round } from './lib/common.mjs';
import { applicationCommands, commandCalls, sum, watchCommands } from './lib/redis.mjs';

async function storeStatus(port) {
  const res = await fetch(`http://${HOST}:${port}/-/bench/store-status`);
  return (await res.json()).status;
}

/**
 * Loads the `guard-redis` server with `scenario` for `duration` seconds between a reset and a
 * read of the counters. The store also works on its own timers, whatever the requests: the
 * canary and the announcement (`nsro ps`) every `canaryInterval` (1 s), the re-verification every
 * `resyncInterval` (60 s), and the fence heartbeat when a guard opts into the fence (the
 * benchmarks' guards do not). MONITOR tells those apart, so that `perRequest` counts only what
 * requests caused. `mode` is the store's mode after the run: `complete` all along is what makes 0
 * the expected answer.
 */
async function measure(redis, port, scenario, { duration, connections }) {
  await redis.cli('config', 'resetstat');
  const watch = await watchCommands(redis.port);
  const modeBefore = (await storeStatus(port))?.mode;
  const run = await load(port, scenario, { duration, connections });
  const status = await storeStatus(port);
  const commands = applicationCommands(await commandCalls(redis));
  const { background, heartbeats, other } = await watch.stop();
  const caused = Math.max(0, sum(commands) - sum(background));
  return {
    requests: run.requests,
    statuses: run.statuses,
    seconds: duration,
    mode: modeBefore === status?.mode ? status?.mode : `${modeBefore} -> ${status?.mode}`,
    states: status?.states,
    commands,
    background,
    heartbeats,
    requestCommands: other,
    perRequest: run.requests > 0 ? caused / run.requests : Number.NaN,
  };
}

/** Warm steady state: the server has answered this path before (and again just now). */
export async function warmCommands(redis, port, options) {
  const scenario = SCENARIOS.find((s) => s.name === 'guardRedisWriteWarm');
  await load(port, scenario, { duration: 0.2, connections: options.connections });
  return measure(redis, port, scenario, options);
}

/**
 * Churn: commands per request while every request of a run names a namespace the server has
 * never seen (CHURN_NAMESPACES of them per run, in turn; `distinctNamespaces` says how many a
 * run reached). In the complete mode each is decided from the copy: absent means writable.
 */
export async function churnCommands(redis, port, options) {
  const scenario = SCENARIOS.find((s) => s.name === 'guardRedisWriteChurn');
  const out = await measure(redis, port, scenario, options);
  return { ...out, distinctNamespaces: Math.min(out.requests, CHURN_NAMESPACES) };
}

function send(agent, port, method, path) {
  return new Promise((resolve, reject) => {
    const body = method === 'GET' ? '' : '{"title":"x"}';
    const req = http.request(
      {
        host: HOST,
        port,
        method,
        path,
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function storeGets(port) {
  const res = await fetch(`http://${HOST}:${port}/-/bench/store-gets`);
  return (await res.json()).storeGets;
}

let trial = 0;

/**
 * `writes` concurrent POSTs to one namespace the server has never read. The connections are
 * opened first with reads (which never consult the store), so the writes leave together over
 * established sockets; the counters are reset just before. With `maintenance`, the namespace
 * has a state (the read is then MGET + PTTL) and every write must be refused.
 *
 * On the complete mode (`guard-redis`) no write reads Redis: the answer is 0 reads. On the
 * degraded mode (`guard-redis-degraded`, per-key reads) left alone, Redis answers the first
 * read in well under a millisecond, while Express takes a few hundred to take in 1,000
 * requests: most writes then find the entry already filled, which shows no stampede but does
 * not test one. With `holdMs`, Redis is held still (CLIENT PAUSE ALL) while the writes arrive —
 * a slow Redis, the case where a stampede hurts — so that every write misses the cache while
 * the first read is still out (`waitedForRead` counts them). That needs the degraded server,
 * whose read budget outlasts the pause; never hold Redis under a complete store that is still
 * needed (a pause of half its `canaryInterval` or more can hold its canary back and degrade it).
 */
export async function stampede(
  redis,
  port,
  { writes, maintenance = false, holdMs = 0, mode = 'degraded' },
) {
  trial++;
  const namespace = `stampede-${maintenance ? 'm' : 'w'}-${process.pid}-${trial}`;
  if (maintenance) await redis.cli('set', `nsro:state:${namespace}`, 'maintenance');
  const agent = new http.Agent({
    keepAlive: true,
    maxSockets: Number.POSITIVE_INFINITY,
    maxFreeSockets: Number.POSITIVE_INFINITY,
  });
  try {
    const path = `/${namespace}/proj/-/issues`;
    const opened = await Promise.all(
      Array.from({ length: writes }, () => send(agent, port, 'GET', path)),
    );
    if (opened.some((s) => s !== 200)) throw new Error('stampede: a read was not answered 200');
    const sockets = Object.values(agent.freeSockets).reduce((n, list) => n + list.length, 0);
    const getsBefore = await storeGets(port);
    await redis.cli('config', 'resetstat');
    if (holdMs > 0) await redis.cli('client', 'pause', String(holdMs), 'ALL');
    const start = performance.now();
    const statuses = await Promise.all(
      Array.from({ length: writes }, () => send(agent, port, 'POST', path)),
    );
    const ms = performance.now() - start;
    const commands = applicationCommands(await commandCalls(redis));
    const waited = (await storeGets(port)) - getsBefore;
    const counted = {};
    for (const s of statuses) counted[s] = (counted[s] ?? 0) + 1;
    const expect = maintenance ? 503 : 200;
    return {
      namespace,
      mode,
      writes,
      holdMs,
      sockets,
      ms: round(ms, 1),
      statuses: counted,
      // Writes that found no fresh cache entry for the namespace and waited for a read (the
      // rest hit the entry that read had filled): all of them shared the Redis reads below.
      waitedForRead: waited,
      allExpected: counted[expect] === writes,
      commands,
      reads: (commands.mget ?? 0) + (commands.get ?? 0),
    };
  } finally {
    agent.destroy();
    if (maintenance) await redis.cli('del', `nsro:state:${namespace}`);
  }
}
