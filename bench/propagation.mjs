// Propagation: N application processes (bench/prop-app.mjs) on one Redis; a namespace is put
// into maintenance and back, again and again, with the real `redis-cli` (SET / DEL) and with the
// package's own CLI (`node dist/bin.js enable|disable`), and for each toggle we take the time
// until *every* process answers the other way.
//
// Two clocks, both wall-clock on this machine: when the change was applied in Redis (the
// timestamp MONITOR gives the SET/DEL/EXEC) and when the command was launched. "Applied" is the
// propagation itself; "launched" adds starting redis-cli (a few ms) or Node plus a connection
// for the CLI (a few hundred ms), which is the operator's tool, not the fleet.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
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

async function waitAll(apps, blocked, since, timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (apps.every((a) => a.last?.blocked === blocked && a.last.at >= since)) {
      return Math.max(...apps.map((a) => a.last.at));
    }
    if (Date.now() > deadline) return null;
    await sleep(1);
  }
}

/**
 * Toggles `toggles` times with `how` ('redis-cli' or 'cli'); returns latency lists (ms) from
 * the applied change and from the launch, and the number of toggles that timed out.
 */
async function toggleLoop(apps, redis, monitorTimes, how, toggles, timeout) {
  const fromApplied = [];
  const fromLaunch = [];
  let timedOut = 0;
  for (let i = 0; i < toggles; i++) {
    const block = i % 2 === 0;
    const seen = monitorTimes.length;
    const launched = wallNow();
    if (how === 'redis-cli') {
      const args = block ? ['set', KEY, 'maintenance'] : ['del', KEY];
      await run('redis-cli', ['-p', String(redis.port), ...args]);
    } else {
      const args = block ? ['enable', NAMESPACE] : ['disable', NAMESPACE];
      await run(process.execPath, [join(ROOT, 'dist', 'bin.js'), ...args, '--redis', redis.url]);
    }
    const everyone = await waitAll(apps, block, launched, timeout);
    // MONITOR's line for the change arrives at about the same time; give it a moment.
    for (let wait = 0; monitorTimes.length === seen && wait < 1000; wait += 5) await sleep(5);
    const applied = monitorTimes[seen];
    if (everyone === null || applied === undefined) {
      timedOut++;
    } else {
      fromApplied.push(everyone - applied);
      fromLaunch.push(everyone - launched);
    }
    // A pause that does not line up with the probes' 1 ms period.
    await sleep(15 + Math.random() * 20);
  }
  return { fromApplied, fromLaunch, timedOut };
}

function stats(list) {
  return {
    n: list.length,
    p50: round(quantile(list, 0.5), 2),
    p99: round(quantile(list, 0.99), 2),
    max: round(Math.max(...list), 2),
  };
}

/**
 * `{ push: { redisCli, cli }, ttlOnly: { redisCli }, processes, ttlMs }`, each with
 * `applied` and `launched` stats `{ n, p50, p99, max }` and `timedOut`.
 */
export async function runPropagation(redis, options) {
  const { processes, toggles, cliToggles, ttlToggles, ttl, log = console.log } = options;
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
  await redis.cli('del', KEY);
  const out = { processes, ttlMs: ttl };
  try {
    const push = await startApps(processes, redis.port, 'push', ttl);
    try {
      log(`  push: ${processes} processes up`);
      const viaRedisCli = await toggleLoop(push, redis, monitorTimes, 'redis-cli', toggles, 5000);
      const viaCli = await toggleLoop(push, redis, monitorTimes, 'cli', cliToggles, 5000);
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
      out.push = {
        redisCli: {
          applied: stats(viaRedisCli.fromApplied),
          launched: stats(viaRedisCli.fromLaunch),
          timedOut: viaRedisCli.timedOut,
        },
        cli: {
          applied: stats(viaCli.fromApplied),
          launched: stats(viaCli.fromLaunch),
          timedOut: viaCli.timedOut,
        },
        http503: answers.filter((s) => s === 503).length,
      };
    } finally {
      await Promise.all(push.map((a) => a.proc?.stop()));
    }
    const ttlApps = await startApps(processes, redis.port, 'ttl', ttl);
    try {
      log(`  ttl only (subscribe: false, ttl ${ttl} ms): ${processes} processes up`);
      const viaRedisCli = await toggleLoop(
        ttlApps,
        redis,
        monitorTimes,
        'redis-cli',
        ttlToggles,
        5000 + ttl,
      );
      out.ttlOnly = {
        redisCli: {
          applied: stats(viaRedisCli.fromApplied),
          launched: stats(viaRedisCli.fromLaunch),
          timedOut: viaRedisCli.timedOut,
        },
      };
    } finally {
      await Promise.all(ttlApps.map((a) => a.proc?.stop()));
    }
  } finally {
    monitor.disconnect();
    monitorClient.disconnect();
    await redis.cli('del', KEY);
  }
  return out;
}
