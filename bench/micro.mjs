#!/usr/bin/env node
// The guard's own cost, in process: the middleware function called directly with prepared
// request objects, next to express-rate-limit's middleware called the same way, in one run.
//
//   node bench/micro.mjs --redis-port P [--quick] [--case NAME ...]
//
// Prints one JSON line: { cases: { <case>: { nsPerOp, rounds: [...] } }, batch, ... }.
//
// How a decision is timed. Each tinybench iteration makes BATCH decisions, each with a fresh
// request object (a real request is new every time, and the guard memoises on it), and waits
// until every one has finished: `next()` called or the response ended. The guard finishes
// synchronously on a cache hit; express-rate-limit is an async function and finishes a few
// microtasks later — both are timed to the moment `next` runs, which is what a request waits
// for. The request object carries `_parsedUrl`, the parse Express's router caches on every
// request before any middleware runs (the guard reuses it; without Express it parses itself).
// The response is a fresh EventEmitter whose setHeader stores into a dictionary, and it emits
// `finish` and `close` once the decision is made, so work a middleware does when a response ends (the
// guard's in-flight count for the migration fence) is counted too. `overhead` is the same
// harness around a middleware that only calls next(): the floor every case includes.
//
// Two kinds of write. `writeWarm*`: `frozen` is in maintenance, so the guard takes its full path
// (resolve the target's root namespace, look up its state and the instance's). `writeIdle*`: a
// store with nothing in maintenance (a separate key prefix for Redis), where `anyClosed()` is
// false and the guard admits a write without parsing it: what most writes cost most of the time.
//
// How noisy it is, on the 2-core virtual machine the results come from: a process settles in
// one JIT state or another (writeWarm ~450 ns in one process, ~500 in the next), the first rounds
// run before it settles (two warm-up rounds are thrown away), and now and then a whole round of
// every case, the harness alone included, runs ~2x slower (not a GC or a deopt: --trace-gc and
// --trace-deopt show neither). npm run bench runs three processes and takes the median of every
// measured round; read the per-round figures before trusting a difference under ~10%.
import { EventEmitter } from 'node:events';
import { parseArgs } from 'node:util';
import express from 'express';
import { rateLimit } from 'express-rate-limit';
import { namespaceReadOnly, RedisStateStore } from 'namespace-read-only';
import parseurl from 'parseurl';
import { Registry } from 'prom-client';
import { Bench } from 'tinybench';
import { median, round } from './lib/common.mjs';
import { connectDataClient } from './lib/redis.mjs';

const { values } = parseArgs({
  options: {
    'redis-port': { type: 'string' },
    quick: { type: 'boolean', default: false },
    // Only these cases (repeatable), e.g. under `node --cpu-prof` to see where one spends.
    case: { type: 'string', multiple: true },
    rounds: { type: 'string' },
    'warmup-rounds': { type: 'string' },
    // After the rounds, profile this one case again, in the JIT state the others left, into
    // this .cpuprofile file (open it in Chrome DevTools).
    'profile-case': { type: 'string' },
    'profile-out': { type: 'string', default: 'micro.cpuprofile' },
  },
});
const quick = values.quick;
const IDLE_CASES = ['writeIdle', 'writeIdleMemory'];
/** Whether case `name` runs. */
const selected = (name) => values.case === undefined || values.case.includes(name);
const needIdle = IDLE_CASES.some(selected);
const BATCH = 1000;
const ROUNDS = values.rounds !== undefined ? Number(values.rounds) : quick ? 1 : 7;
/**
 * Whole rounds run first and thrown away. The first rounds of a process run while the JIT still
 * settles on the shapes every case brings (the harness alone measured ~150-200 ns in them, ~95
 * after); they are what a process costs on its way to its steady state, not that state.
 */
const WARMUP_ROUNDS =
  values['warmup-rounds'] !== undefined ? Number(values['warmup-rounds']) : quick ? 0 : 2;
const TIME_MS = quick ? 40 : 400;

const app = express();

/**
 * A response as far as the middlewares use one: headers into a dictionary, `end`, and events
 * (the guard counts an admitted write in flight until its response emits `close`). Fresh for
 * every decision, like a real one; `finish` and `close` are emitted as soon as the decision is known, so
 * the cost of leaving the in-flight count is part of the decision.
 */
class FakeResponse extends EventEmitter {
  constructor(done) {
    super();
    this.statusCode = 200;
    this.headersSent = false;
    this.writableEnded = false;
    this.headers = Object.create(null);
    this.done = done;
  }
  setHeader(name, value) {
    this.headers[name.toLowerCase()] = value;
    return this;
  }
  getHeader(name) {
    return this.headers[name.toLowerCase()];
  }
  end() {
    this.writableEnded = true;
    this.over();
    this.done(END);
    return this;
  }
  /** What Node emits when a response is over: `finish`, then `close` (the fence counts on it). */
  over() {
    this.emit('finish');
    this.emit('close');
  }
}

/** A factory of fresh request objects with the same shape Express gives the first middleware. */
function requests(method, url, headers = {}) {
  const parsed = parseurl({ url });
  return () => ({
    method,
    url,
    originalUrl: url,
    baseUrl: '',
    headers,
    _parsedUrl: parsed,
    ip: '127.0.0.1',
    app,
  });
}

/**
 * How a decision ended, as small integers counted in a typed array: the harness's own callbacks
 * are shared by every case, and counting by outcome name made them megamorphic, which added
 * ~60 ns to every case (the `overhead` floor included) once several cases had run.
 */
const NEXT = 0;
const END = 1;
const ERROR = 2;
const OUTCOME_NAMES = ['next', 'end', 'error'];
/** Outcomes per case: every decision of a case must end the way its first one did. */
const outcomes = {};

/** Calls `middleware` once; `done(outcome)` runs when it has finished (NEXT, END, ERROR). */
function decideOnce(middleware, req, done) {
  const res = new FakeResponse(done);
  // What Express's init middleware does before any other: the two objects point at each other,
  // and `res.locals` is a fresh dictionary.
  req.res = res;
  res.req = req;
  res.locals = Object.create(null);
  middleware(req, res, (error) => {
    res.over();
    done(error === undefined ? NEXT : ERROR);
  });
  return res;
}

/** One tinybench iteration: BATCH decisions, resolved when the last one has finished. */
function batchTask(name, middleware, make) {
  const counts = new Int32Array(3);
  outcomes[name] = counts;
  return () =>
    new Promise((resolve) => {
      let pending = BATCH;
      const finished = (outcome) => {
        counts[outcome]++;
        if (--pending === 0) resolve();
      };
      for (let i = 0; i < BATCH; i++) decideOnce(middleware, make(), finished);
    });
}

const redis = await connectDataClient(values['redis-port']);
await redis.set('nsro:state:frozen', 'maintenance');
await redis.del('nsro:state:acme');
// The defaults: a complete copy kept by push (keyspace notifications are turned on).
const redisStore = new RedisStateStore({ redis });
const redisGuard = namespaceReadOnly({ store: redisStore });
if ((await redisStore.ready()).mode !== 'complete') throw new Error('redis store not complete');
const memoryGuard = namespaceReadOnly();
await memoryGuard.store.set('frozen', 'maintenance');
// The same, with the `metrics` option (prom-client): what counting a decision costs.
const metricsGuard = namespaceReadOnly({ metrics: { registry: new Registry() } });
await metricsGuard.store.set('frozen', 'maintenance');
// Idle: nothing in maintenance anywhere under this prefix. Built only where idle cases run.
const IDLE_PREFIX = 'nsro-micro-idle:';
let idleStore = null;
let idleGuard = null;
let idleMemoryGuard = null;
if (needIdle) {
  const stale = await redis.keys(`${IDLE_PREFIX}*`);
  if (stale.length > 0) await redis.del(...stale);
  idleStore = new RedisStateStore({ redis, prefix: IDLE_PREFIX });
  idleGuard = namespaceReadOnly({ store: idleStore });
  idleMemoryGuard = namespaceReadOnly();
  const { mode } = await idleStore.ready();
  if (mode !== 'complete') throw new Error('idle redis store not complete');
}
const stores = [
  ['redis', redisStore, true],
  ['memory', memoryGuard.store, true],
  ['metrics memory', metricsGuard.store, true],
  ...(needIdle
    ? [
        ['idle redis', idleStore, false],
        ['idle memory', idleMemoryGuard.store, false],
      ]
    : []),
];
for (const [name, store, closed] of stores) {
  const any = await store.anyClosed();
  if (any !== closed) throw new Error(`${name} store: anyClosed() is ${any}, expected ${closed}`);
}
const limiter = rateLimit({ windowMs: 60_000, limit: 1_000_000_000 });

async function warm() {
  for (const key of ['acme', 'frozen', '*']) await redisStore.get(key);
  for (const key of ['acme', 'frozen', '*']) {
    if (redisStore.peek(key) === undefined) throw new Error(`redis store: ${key} not cached`);
  }
}

const json = { 'content-type': 'application/json' };
const ALL_CASES = [
  {
    name: 'overhead',
    what: 'the harness alone: a middleware that only calls next()',
    mw: (_req, _res, next) => next(),
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
  {
    name: 'read',
    what: 'GET /acme/proj/-/issues',
    mw: redisGuard,
    make: requests('GET', '/acme/proj/-/issues'),
    expect: 'next',
  },
  {
    name: 'writeWarm',
    what: 'POST /acme/proj/-/issues, writable, Redis store (complete copy), frozen in maintenance',
    mw: redisGuard,
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
  {
    name: 'writeWarmMemory',
    what: 'POST /acme/proj/-/issues, writable, memory store, frozen in maintenance',
    mw: memoryGuard,
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
  {
    name: 'writeWarmMetrics',
    what: 'writeWarmMemory with the metrics option (a prom-client Registry)',
    mw: metricsGuard,
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
  {
    name: 'writeIdle',
    what: 'POST /acme/proj/-/issues, writable, Redis store with nothing in maintenance',
    mw: idleGuard,
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
  {
    name: 'writeIdleMemory',
    what: 'POST /acme/proj/-/issues, writable, memory store with nothing in maintenance',
    mw: idleMemoryGuard,
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
  {
    name: 'blockedWarm',
    what: 'POST /frozen/proj/-/issues, in maintenance, Redis store: the 503 written',
    mw: redisGuard,
    make: requests('POST', '/frozen/proj/-/issues', json),
    expect: 'end',
  },
  {
    name: 'allowlisted',
    what: 'POST /frozen/proj.git/git-upload-pack (git fetch) to a namespace in maintenance',
    mw: redisGuard,
    make: requests('POST', '/frozen/proj.git/git-upload-pack', {
      'content-type': 'application/x-git-upload-pack-request',
    }),
    expect: 'next',
  },
  {
    name: 'apiEncodedId',
    what: 'POST /api/v4/projects/acme%2Fsub%2Fproj/issues, writable',
    mw: redisGuard,
    make: requests('POST', '/api/v4/projects/acme%2Fsub%2Fproj/issues', json),
    expect: 'next',
  },
  {
    name: 'rateLimitMemory',
    what: 'peer: express-rate-limit, memory store, POST /acme/proj/-/issues',
    mw: limiter,
    make: requests('POST', '/acme/proj/-/issues', json),
    expect: 'next',
  },
];

const CASES = ALL_CASES.filter((c) => selected(c.name));
if (CASES.length === 0) throw new Error('micro: no case selected');

// Every case once, checked: the right outcome, and whether it finished synchronously.
for (const c of CASES) {
  await warm();
  let outcome = null;
  const res = decideOnce(c.mw, c.make(), (o) => {
    outcome = o;
  });
  c.sync = outcome !== null;
  while (outcome === null) await new Promise((r) => setImmediate(r));
  if (OUTCOME_NAMES[outcome] !== c.expect) {
    throw new Error(
      `micro: ${c.name} finished with ${OUTCOME_NAMES[outcome]}, expected ${c.expect}`,
    );
  }
  if (c.expect === 'end' && res.statusCode !== 503) {
    throw new Error(`micro: ${c.name} answered ${res.statusCode}`);
  }
}

const rounds = Object.fromEntries(CASES.map((c) => [c.name, []]));
for (let round = -WARMUP_ROUNDS; round < ROUNDS; round++) {
  await warm();
  const bench = new Bench({
    time: TIME_MS,
    warmupTime: quick ? 10 : 100,
    iterations: quick ? 5 : 20,
    throws: true,
  });
  for (const c of CASES) {
    bench.add(c.name, batchTask(c.name, c.mw, c.make), {
      // Between iterations, untimed: let timers and I/O run. A batch finishes in microtasks, so
      // without this the event loop would never turn during a case: the stores' canaries (a
      // timer, a SET, then its keyspace notification) would go unanswered, and after
      // canaryInterval the stores would — rightly — leave the complete mode.
      afterEach: () => new Promise((resolve) => setImmediate(resolve)),
    });
  }
  await bench.run();
  // Still what is meant to be measured: a store that left the complete mode during a round
  // measured the degraded mode instead.
  for (const [name, store] of [
    ['redis', redisStore],
    ['idle redis', idleStore],
  ]) {
    if (store === null) continue;
    const { mode, cause } = store.status();
    if (mode !== 'complete') throw new Error(`micro: ${name} store is ${mode} (${cause})`);
  }
  for (const task of bench.tasks) {
    const latency = task.result?.latency;
    if (latency === undefined) throw new Error(`micro: ${task.name} has no result`);
    if (round >= 0) rounds[task.name].push((latency.p50 * 1e6) / BATCH);
  }
}
for (const c of CASES) {
  const seen = Object.fromEntries(
    OUTCOME_NAMES.map((name, code) => [name, outcomes[c.name]?.[code] ?? 0]),
  );
  const wrong = Object.entries(seen).filter(([outcome, n]) => outcome !== c.expect && n > 0);
  if (wrong.length > 0) {
    throw new Error(
      `micro: ${c.name}: decisions that did not end in ${c.expect}: ${JSON.stringify(seen)}`,
    );
  }
}

const profiled = CASES.find((c) => c.name === values['profile-case']);
if (values['profile-case'] !== undefined) {
  if (profiled === undefined)
    throw new Error(`--profile-case: ${values['profile-case']} did not run`);
  const { Session } = await import('node:inspector/promises');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 20 });
  const bench = new Bench({ time: 2000, warmupTime: 0, iterations: 20, throws: true });
  bench.add(profiled.name, batchTask(profiled.name, profiled.mw, profiled.make), {
    afterEach: () => new Promise((resolve) => setImmediate(resolve)),
  });
  await session.post('Profiler.start');
  await bench.run();
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(values['profile-out'], JSON.stringify(profile));
  session.disconnect();
}

const cases = {};
for (const c of CASES) {
  cases[c.name] = {
    nsPerOp: round(median(rounds[c.name]), 1),
    what: c.what,
    synchronous: c.sync,
    rounds: rounds[c.name].map((v) => round(v, 1)),
  };
}
await redisGuard.close();
await idleGuard?.close();
await redisStore.close(); // the guard leaves a store it was given open: it may be shared
await idleStore?.close();
redis.disconnect();
console.log(
  JSON.stringify({
    batch: BATCH,
    roundsRun: ROUNDS,
    warmupRounds: WARMUP_ROUNDS,
    timePerTaskMs: TIME_MS,
    cases,
  }),
);
