// Propagation: N application processes (bench/prop-app.mjs) on one Redis, each a quick-start
// store (`new RedisStateStore({ redis: new Redis(url) })`, defaults); a namespace is put into
// maintenance and back, again and again, three ways:
//
//   redis-cli  the real `redis-cli SET nsro:state:prop maintenance` / `DEL`: a plain client
//              that is no store, so only a keyspace notification can carry the change
//   store      `store.set('prop', 'maintenance')` / `store.delete('prop')` from this process
//              (a RedisStateStore with `subscribe: false`): one MULTI of SET + SADD to the index
//              + PUBLISH on `nsro:changes`, so both an announcement and a notification carry it
//   cli        the package's CLI, `node dist/bin.js enable|disable prop` (store.enable inside)
//
// and for each toggle we take the time until every process answers the other way (its guard
// refuses, or admits again, a write to the namespace: "obeyed"), and each process's own time.
//
// The quick-start configuration: the Redis server is stock (bench/lib/redis.mjs starts it
// without `notify-keyspace-events`), and earlier sections' stores have turned notifications on
// since, so they are switched off again (`CONFIG SET notify-keyspace-events ""`) before the
// processes start: the processes' stores have to turn them on themselves, as on a fresh server.
// Both settings are reported.
//
// Measuring starts `settleMs` after the last process reported ready (starting 8 Node processes at
// once keeps a small machine busy for a moment). The first two changes after that (a redis-cli
// SET and DEL) are the first time each process runs its push path, with cold code, all 8 at
// once on a small machine: they are reported apart (`firstChange`), not in the figures of any
// way. `series` lists every toggle's time in order.
//
// Two clocks, both wall-clock on this machine: when the change was applied in Redis (the
// timestamp MONITOR gives the SET/DEL, inside the MULTI for the store) and when the command was
// launched. "Applied" is the propagation itself; "launched" adds starting redis-cli (a few ms),
// the store's round trip, or Node plus a connection for the CLI (a few hundred ms), which is
// the operator's tool, not the fleet.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisStateStore } from 'namespace-read-only';
import { BENCH_DIR, quantile, ROOT, round, sleep, startNode, wallNow } from './lib/common.mjs';

const NAMESPACE = 'prop';
const KEY = `nsro:state:${NAMESPACE}`;

function run(cmd, args) {
  return new Promise((done, fail) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) fail(new Error(`${cmd} ${args.join(' ')}: ${error.message}\n${stderr}`));
      else done(stdout);
    });
  });
}

async function startApps(count, redisPort, mode, ttl) {
  const apps = [];
  const starting = [];
  for (let i = 0; i < count; i++) {
    const app = { last: null, flips: 0 };
    apps.push(app);
    starting.push(
      startNode(
        join(BENCH_DIR, 'prop-app.mjs'),
        ['--redis-port', String(redisPort), '--mode', mode, '--ttl', String(ttl)],
        { ipc: true, timeout: 60_000 },
      ).then((proc) => {
        app.proc = proc;
        app.port = proc.info.port;
        app.last ??= { blocked: proc.info.blocked, at: 0 };
        proc.child.on('message', (m) => {
          if (m?.type === 'flip') {
            app.last = { blocked: m.blocked, at: m.at };
            app.flips++;
          }
        });
      }),
    );
  }
  await Promise.all(starting);
  return apps;
}

async function statuses(apps) {
  return Promise.all(
    apps.map(async (a) => {
      const res = await fetch(`http://127.0.0.1:${a.port}/-/bench/store-status`);
      return (await res.json()).status;
    }),
  );
}

/** Resolves with each app's flip time once every app answers `blocked` (since `since`), or null. */
async function waitAll(apps, blocked, since, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (apps.every((a) => a.last?.blocked === blocked && a.last.at >= since)) {
      return apps.map((a) => a.last.at);
    }
    if (Date.now() > deadline) return null;
    await sleep(1);
  }
}

/**
 * Toggles `toggles` times with `change(block)`; returns latency lists (ms): `fromApplied` and
 * `fromLaunch` until the last process obeyed, `perProcess` each process's own time from the
 * applied change, and the number of toggles that timed out.
 */
async function toggleLoop(apps, monitorTimes, change, toggles, timeout) {
  const fromApplied = [];
  const fromLaunch = [];
  const perProcess = [];
  let timedOut = 0;
  for (let i = 0; i < toggles; i++) {
    const block = i % 2 === 0;
    const seen = monitorTimes.length;
    const launched = wallNow();
    await change(block);
    const times = await waitAll(apps, block, launched, timeout);
    // MONITOR's line for the change arrives at about the same time; give it a moment.
    for (let wait = 0; monitorTimes.length === seen && wait < 1000; wait += 5) await sleep(5);
    const applied = monitorTimes[seen];
    if (times === null || applied === undefined) {
      timedOut++;
    } else {
      const everyone = Math.max(...times);
      fromApplied.push(everyone - applied);
      fromLaunch.push(everyone - launched);
      for (const t of times) perProcess.push(t - applied);
    }
    // A pause that does not line up with the probes' 1 ms period.
    await sleep(15 + Math.random() * 20);
  }
  return { fromApplied, fromLaunch, perProcess, timedOut };
}

function stats(list) {
  return {
    n: list.length,
    p50: round(quantile(list, 0.5), 2),
    p99: round(quantile(list, 0.99), 2),
    max: list.length === 0 ? Number.NaN : round(Math.max(...list), 2),
  };
}

const summary = (x) => ({
  applied: stats(x.fromApplied),
  launched: stats(x.fromLaunch),
  perProcess: stats(x.perProcess),
  timedOut: x.timedOut,
  // Every toggle's time until every process obeyed, in order: where the slow ones fall.
  series: x.fromApplied.map((v) => round(v, 1)),
});

/**
 * `{ push: { redisCli, store, cli, http503, modes }, ttlOnly: { redisCli }, processes, ttlMs,
 * keyspaceEvents: { before, after } }`; each way has `applied` and `launched` stats (until every
 * process obeyed), `perProcess` stats (each process's own time), each `{ n, p50, p99, max }`,
 * and `timedOut`.
 */
export async function runPropagation(redis, options) {
  const {
    processes,
    toggles,
    storeToggles = toggles,
    cliToggles,
    ttlToggles,
    ttl,
    settleMs = 0,
    log = console.log,
  } = options;
  const monitorClient = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
  monitorClient.on('error', () => undefined);
  await monitorClient.connect();
  const monitor = await monitorClient.monitor();
  const monitorTimes = [];
  monitor.on('monitor', (time, args) => {
    const command = String(args[0]).toLowerCase();
    if ((command === 'set' || command === 'del') && args[1] === KEY) {
      monitorTimes.push(Number(time) * 1000);
    }
  });
  // The operator's side of `store.set`: a store that only writes (no subscriber, like the CLI).
  const writerClient = new Redis({ host: '127.0.0.1', port: redis.port });
  writerClient.on('error', () => undefined);
  const writer = new RedisStateStore({ redis: writerClient, subscribe: false });
  await redis.cli('del', KEY);
  // A stock server's setting, whatever earlier sections' stores turned on.
  await redis.cli('config', 'set', 'notify-keyspace-events', '');
  const before = await redis.cli('config', 'get', 'notify-keyspace-events');
  const out = { processes, ttlMs: ttl };
  try {
    const push = await startApps(processes, redis.port, 'push', ttl);
    try {
      out.keyspaceEvents = {
        before: before.split('\n')[1] ?? '',
        after: (await redis.cli('config', 'get', 'notify-keyspace-events')).split('\n')[1] ?? '',
      };
      log(
        `  push: ${processes} processes up (notify-keyspace-events "${out.keyspaceEvents.before}" ` +
          `before they started, "${out.keyspaceEvents.after}" after)`,
      );
      await sleep(settleMs);
      const redisCli = (block) =>
        run('redis-cli', [
          '-p',
          String(redis.port),
          ...(block ? ['set', KEY, 'maintenance'] : ['del', KEY]),
        ]);
      // The first change after start (SET, then DEL) is the first time each process runs its
      // push path, with cold code, all at once: reported on its own, not in any way's figures.
      const first = await toggleLoop(push, monitorTimes, redisCli, 2, 5000);
      const viaRedisCli = await toggleLoop(push, monitorTimes, redisCli, toggles, 5000);
      const viaStore = await toggleLoop(
        push,
        monitorTimes,
        (block) => (block ? writer.set(NAMESPACE, 'maintenance') : writer.delete(NAMESPACE)),
        storeToggles,
        5000,
      );
      const viaCli = await toggleLoop(
        push,
        monitorTimes,
        (block) =>
          run(process.execPath, [
            join(ROOT, 'dist', 'bin.js'),
            block ? 'enable' : 'disable',
            NAMESPACE,
            '--redis',
            redis.url,
          ]),
        cliToggles,
        5000,
      );
      // Every process really answers 503 over HTTP while the namespace is in maintenance.
      await redis.cli('set', KEY, 'maintenance');
      await waitAll(push, true, 0, 5000);
      const answers = await Promise.all(
        push.map((a) =>
          fetch(`http://127.0.0.1:${a.port}/prop/proj/-/issues`, { method: 'POST' }).then(
            (r) => r.status,
          ),
        ),
      );
      await redis.cli('del', KEY);
      await waitAll(push, false, 0, 5000);
      // Still the mode measured: a process that left `complete` midway was measured degraded.
      const modes = (await statuses(push)).map((s) => s?.mode);
      out.push = {
        firstChange: summary(first),
        redisCli: summary(viaRedisCli),
        store: summary(viaStore),
        cli: summary(viaCli),
        http503: answers.filter((s) => s === 503).length,
        modes,
      };
    } finally {
      await Promise.all(push.map((a) => a.proc?.stop()));
    }
    const ttlApps = await startApps(processes, redis.port, 'ttl', ttl);
    try {
      log(`  ttl only (subscribe: false, ttl ${ttl} ms): ${processes} processes up`);
      const viaRedisCli = await toggleLoop(
        ttlApps,
        monitorTimes,
        (block) =>
          run('redis-cli', [
            '-p',
            String(redis.port),
            ...(block ? ['set', KEY, 'maintenance'] : ['del', KEY]),
          ]),
        ttlToggles,
        5000 + ttl,
      );
      out.ttlOnly = { redisCli: summary(viaRedisCli) };
    } finally {
      await Promise.all(ttlApps.map((a) => a.proc?.stop()));
    }
  } finally {
    monitor.disconnect();
    monitorClient.disconnect();
    await writer.close();
    writerClient.disconnect();
    await redis.cli('del', KEY);
  }
  return out;
}
