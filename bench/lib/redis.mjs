// A private, throwaway redis-server on a free loopback port, the real redis-cli, and INFO
// commandstats. The server is stock apart from no persistence: in particular it starts with
// keyspace notifications OFF (`notify-keyspace-events ""`, Redis's default), as on the quick
// start, so that every RedisStateStore in the benchmarks has to turn them on itself (its
// default `keyspaceEvents: 'enable'`, CONFIG SET).

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, HOST, sleep } from './common.mjs';

/**
 * A connected client for the data path, with the settings node-notes recommends (no offline
 * queue, one retry, a short connect timeout): a dead Redis fails fast instead of queueing.
 */
export async function connectDataClient(port) {
  const redis = new Redis({
    host: HOST,
    port: Number(port),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 1000,
  });
  redis.on('error', () => undefined);
  await redis.connect();
  return redis;
}

export function redisCli(port, args) {
  return new Promise((done, fail) => {
    execFile('redis-cli', ['-p', String(port), ...args], { timeout: 10_000 }, (error, stdout) => {
      if (error) fail(new Error(`redis-cli ${args.join(' ')}: ${error.message}`));
      else done(stdout.replace(/\n$/, ''));
    });
  });
}

/** Starts redis-server; resolves with `{ port, url, cli(...args), stop() }`. */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'nsro-bench-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    const keep = (chunk) => {
      log = (log + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    const exited = new Promise((done) => child.once('exit', done));
    let dead = false;
    void exited.then(() => {
      dead = true;
    });
    const deadline = Date.now() + 10_000;
    let up = false;
    while (!dead && Date.now() < deadline) {
      try {
        const info = await redisCli(port, ['info', 'server']);
        // Ours, not some other process that happened to take the port.
        if (info.includes(`process_id:${child.pid}\r`)) {
          up = true;
          break;
        }
      } catch {
        // not up yet
      }
      await sleep(20);
    }
    if (up) {
      return {
        port,
        url: `redis://${HOST}:${port}`,
        cli: (...args) => redisCli(port, args),
        stop: async () => {
          process.off('exit', killOnExit);
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    await exited;
    process.off('exit', killOnExit);
    if (attempt >= 2) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start:\n${log}`);
    }
  }
}

/** `INFO commandstats` as `{ mget: calls, get: calls, ... }`. */
export async function commandCalls(redis) {
  const info = await redis.cli('info', 'commandstats');
  const calls = {};
  for (const line of info.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) calls[m[1]] = Number(m[2]);
  }
  return calls;
}

/**
 * Commands a benchmark step itself sends to read or reset the statistics, or to open its
 * MONITOR connections (HELLO): none of them comes from the application under test, whose
 * connections are all open before any measurement starts.
 */
const BOOKKEEPING = new Set([
  'info',
  'config',
  'config|resetstat',
  'ping',
  'monitor',
  'hello',
  'client|pause',
]);

/** The commands in `calls` that the application sent (statistics bookkeeping removed). */
export function applicationCommands(calls) {
  const out = {};
  for (const [name, count] of Object.entries(calls)) {
    if (!BOOKKEEPING.has(name) && count > 0) out[name] = count;
  }
  return out;
}

export function sum(record) {
  return Object.values(record).reduce((a, b) => a + b, 0);
}

/**
 * Watches every command the server executes (MONITOR) until `stop()`, which resolves with
 * `{ background, heartbeats, other }`, each as `{ command: calls }`:
 *
 * - `background`: what a store does on its own timers, not because of requests: the canary
 *   (a SET of `<prefix>canary:<id>` every `canaryInterval`), the periodic re-verification (the
 *   load script: an EVAL whose arguments are only the state prefix and the index, with the
 *   SMEMBERS/GET/PTTL it runs), the process's announcement for `nsro ps` (a SET of
 *   `<prefix>ps:<id>` and a ZADD of `<prefix>ps` on the canary's tick, with a ZREMRANGEBYSCORE
 *   and a PEXPIRE every tenth), and the migration fence's heartbeat (`<prefix>procs`,
 *   `<prefix>proc:<id>`), which exists only when a guard opts in with `fence: true`;
 * - `heartbeats`: the fence heartbeat's share of `background`, apart (should stay empty: the
 *   benchmarks run without the fence);
 * - `other`: everything else, i.e. what requests (or pushes) caused.
 */
export async function watchCommands(port, prefix = 'nsro:') {
  const { Redis } = await import('ioredis');
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  const monitor = await client.monitor();
  const background = {};
  const heartbeats = {};
  const other = {};
  const statePrefix = `${prefix}state:`;
  const index = `${prefix}index`;
  // Where the commands of the script running now go (MONITOR lists a script's commands, as
  // source `lua`, right after its EVAL; INFO commandstats counts them too).
  let script = [other];
  const count = (into, command) => {
    for (const record of into) record[command] = (record[command] ?? 0) + 1;
  };
  monitor.on('monitor', (_time, args, source) => {
    const command = String(args[0]).toLowerCase();
    if (BOOKKEEPING.has(command) || command.startsWith('config')) return;
    let into = script;
    if (source !== 'lua') {
      const scripted = command === 'eval' || command === 'evalsha';
      const key = String((scripted ? args[3] : args[1]) ?? '');
      if (key.startsWith(`${prefix}proc`)) into = [background, heartbeats];
      else if (!scripted && key.startsWith(`${prefix}canary:`)) into = [background];
      else if (!scripted && (key === `${prefix}ps` || key.startsWith(`${prefix}ps:`))) {
        into = [background];
      }
      // The re-verification's load script: ARGV is exactly (state prefix, index).
      else if (scripted && args.length === 5 && key === statePrefix && args[4] === index) {
        into = [background];
      } else into = [other];
      if (scripted) script = into;
    }
    count(into, command);
  });
  return {
    stop: async () => {
      // Whatever the server executed before this PING has reached us once its reply is in.
      await client.ping().catch(() => undefined);
      monitor.disconnect();
      client.disconnect();
      return { background, heartbeats, other };
    },
  };
}
