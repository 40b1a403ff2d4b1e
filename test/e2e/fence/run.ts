import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { BIN, ROOT } from '../../helpers/dist.js';
import {
  connectClient,
  type RedisServer,
  sleep,
  startRedis,
  waitFor,
} from '../../helpers/redis.js';

/**
 * One run of the migration-fence proof, shared by test/fence.test.ts (a few runs in CI) and
 * `npm run fence-check` (20 runs):
 *
 * - a private redis-server, and `apps` application processes (test/fence/app.mjs: each its own
 *   Express app and Redis clients) whose write handler takes 50–500 ms and then commits with
 *   `RPUSH commits "<ns> <pid>"`: the list's order is the global commit order;
 * - a load generator here keeping writes to acme, beta, gamma and delta flowing;
 * - the operator's real CLI (`node dist/bin.js`), spawned as an operator would run it. The moment
 *   it exits, this process pushes a marker (`RPUSH commits "MARK <n>"`); the CLI returned before
 *   that, so every commit after the marker committed after the fence said it was safe.
 *
 * Phases:
 * 1. `enable acme --wait` under load: it returns, no acme commit follows its marker, and
 *    writes to the other namespaces go on.
 * 2. `disable acme`, then `enable acme --wait` again while one process, with acme writes in
 *    flight, is SIGKILLed once the wait has begun: the wait returns (the dead process drops out
 *    by its heartbeat) only once the dead process's registration has expired, and the marker
 *    rule holds for the rest.
 * 3. `enable '*' --wait`: no commit at all follows its marker.
 * 4. A job (`guard.runWrite('acme', …)`) held open in one process: `enable acme --wait
 *    --timeout 1s` exits 3 naming that process with 1 write in flight; once the job ends,
 *    `wait acme` succeeds.
 *
 * It collects what happened; the caller asserts.
 */

const APP = join(dirname(fileURLToPath(import.meta.url)), 'app.mjs');

export const NAMESPACES = ['acme', 'beta', 'gamma', 'delta'] as const;

interface App {
  readonly child: ChildProcess;
  readonly port: number;
  readonly pid: number;
  alive: boolean;
  readonly exited: Promise<void>;
  output(): string;
}

async function startApp(url: string, heartbeatTtl: number): Promise<App> {
  const child = spawn(process.execPath, [APP], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: url, HEARTBEAT_TTL: String(heartbeatTtl) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString('utf8')).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const ready = await new Promise<RegExpExecArray>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`app did not start:\n${out}`)), 30_000);
    const check = () => {
      const m = /ready (\d+) (\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        done(m);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`app exited during start-up (${code ?? signal}):\n${out}`));
    });
  });
  const app: App = {
    child,
    port: Number(ready[1]),
    pid: Number(ready[2]),
    alive: true,
    exited,
    output: () => out,
  };
  void exited.then(() => {
    app.alive = false;
  });
  return app;
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall-clock ms from spawn to exit. */
  readonly ms: number;
  /** `performance.now()` when the process exited. */
  readonly exitedAt: number;
  /** The wait's own duration, from `... acknowledged in N ms`. */
  readonly waitMs: number | null;
}

/**
 * `node dist/bin.js ...args --redis <url>`. `onLine` sees each stdout line as it comes; the
 * returned promise resolves when the process has exited, and `then` runs before anything else
 * does (the marker is pushed from there).
 */
function nsro(
  url: string,
  args: readonly string[],
  onExit: () => Promise<unknown> | unknown = () => undefined,
  onLine: (line: string) => void = () => undefined,
): Promise<CliRun> {
  const started = performance.now();
  const env = { ...process.env };
  delete env.REDIS_URL;
  const child = spawn(process.execPath, [BIN, ...args, '--redis', url], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    partial += chunk.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  // A wait that hangs fails the run instead of the whole suite.
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((done, fail) => {
    child.once('error', fail);
    child.once('close', (code) => {
      const exitedAt = performance.now();
      clearTimeout(timer);
      Promise.resolve(onExit()).then(() => {
        const m = /acknowledged in (\d+) ms/.exec(stdout);
        done({
          code,
          stdout,
          stderr,
          ms: Math.round(exitedAt - started),
          exitedAt,
          waitMs: m === null ? null : Number(m[1]),
        });
      }, fail);
    });
  });
}

/** Keeps `concurrency` writes in flight to random namespaces on random live apps. */
class Load {
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  readonly statuses = new Map<string, Map<number, number>>();
  errors = 0;
  #running = false;
  #workers: Promise<void>[] = [];

  constructor(
    private readonly apps: readonly App[],
    private readonly concurrency: number,
  ) {}

  start(): void {
    this.#running = true;
    for (let i = 0; i < this.concurrency; i++) this.#workers.push(this.#work());
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#workers);
    this.#workers = [];
    this.#agent.destroy();
  }

  count(namespace: string, status: number): number {
    return this.statuses.get(namespace)?.get(status) ?? 0;
  }

  async #work(): Promise<void> {
    while (this.#running) {
      const live = this.apps.filter((a) => a.alive);
      const app = live[Math.floor(Math.random() * live.length)];
      const ns = NAMESPACES[Math.floor(Math.random() * NAMESPACES.length)] as string;
      if (app === undefined) return;
      try {
        const status = await post(app.port, `/${ns}/write`, this.#agent);
        const byStatus = this.statuses.get(ns) ?? new Map<number, number>();
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
        this.statuses.set(ns, byStatus);
        // A refusal comes back at once: do not spin on it (pacing of the load, not a wait).
        if (status !== 201) await sleep(20);
      } catch {
        this.errors++; // the process was killed under this request
        await sleep(20);
      }
    }
  }
}

function post(port: number, path: string, agent: http.Agent | false = false): Promise<number> {
  return new Promise((done, fail) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path, agent, headers: { 'content-length': 0 } },
      (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`POST ${path} timed out`)));
    req.on('error', fail);
    req.end();
  });
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'GET', path, agent: false },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString('utf8');
        });
        res.on('end', () => done({ status: res.statusCode ?? 0, body }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', fail);
    req.end();
  });
}

/** The commits list entries strictly between two markers (`MARK 1`, `OPEN 1`...). */
function between(list: readonly string[], from: string, to: string): string[] {
  const start = list.indexOf(from);
  const end = list.indexOf(to, start + 1);
  if (start === -1 || end === -1) {
    throw new Error(`markers ${from} / ${to} missing or out of order`);
  }
  return list.slice(start + 1, end);
}

const namespaceOf = (entry: string) => entry.split(' ')[0] ?? '';

export interface FenceRunOptions {
  readonly apps?: number;
  readonly heartbeatTtl?: number;
  /** Writes kept in flight by the load generator. */
  readonly concurrency?: number;
}

export interface FenceRunReport {
  readonly heartbeatTtl: number;
  readonly fence: {
    readonly cli: CliRun;
    /** acme commits after the marker (lost writes): must be empty. */
    readonly lateAcme: readonly string[];
    /** Commits to the other namespaces after the marker, while acme was closed. */
    readonly othersAfter: number;
  };
  readonly kill: {
    readonly cli: CliRun;
    /** acme writes the killed process was running when it died. */
    readonly victimInflight: number;
    readonly victimPid: number;
    /** Whether the killed process's registration existed right before the kill, and when the CLI exited. */
    readonly victimRegistered: { readonly atKill: boolean; readonly atExit: boolean };
    /** From the SIGKILL to the CLI's exit (reported, not asserted). */
    readonly killToExitMs: number;
    readonly lateAcme: readonly string[];
  };
  readonly instance: {
    readonly cli: CliRun;
    /** Commits of any namespace after the marker: must be empty. */
    readonly late: readonly string[];
  };
  readonly timeout: {
    readonly holderPid: number;
    readonly cli: CliRun;
    /** `wait acme` once the held job was released. */
    readonly after: CliRun;
  };
  readonly load: {
    readonly statuses: Record<string, Record<number, number>>;
    readonly errors: number;
    readonly commits: number;
  };
}

export async function runFence(options: FenceRunOptions = {}): Promise<FenceRunReport> {
  const heartbeatTtl = options.heartbeatTtl ?? 1000;
  let redis: RedisServer | undefined;
  let client: Redis | undefined;
  const apps: App[] = [];
  let load: Load | undefined;
  try {
    redis = await startRedis();
    const url = redis.url;
    client = await connectClient(redis.port, { enableOfflineQueue: true });
    const db = client;
    apps.push(
      ...(await Promise.all(
        Array.from({ length: options.apps ?? 4 }, () => startApp(url, heartbeatTtl)),
      )),
    );
    const mark = (label: string) => async () => {
      await db.rpush('commits', label);
    };
    /** `nsro disable <ns>`, as the store does it (DEL and announce), after a marker. */
    const disable = async (ns: string, label: string) => {
      await db.rpush('commits', `OPEN ${label}`);
      await db.multi().del(`nsro:state:${ns}`).publish('nsro:changes', ns).exec();
    };
    /** Commits recorded after `marker` (all of them when `marker` is null). */
    const commitsAfter = async (marker: string | null) => {
      const all = await db.lrange('commits', 0, -1);
      return marker === null ? all : all.slice(all.indexOf(marker) + 1);
    };
    /**
     * Waits until no live app runs a write handler for `namespace` (any, when null): every write
     * admitted so far has committed, so a lost one would now show after its marker.
     */
    const settled = (namespace: string | null, what: string) =>
      waitFor(
        async () => {
          for (const app of apps.filter((a) => a.alive)) {
            const busy = JSON.parse((await get(app.port, '/-/busy')).body) as Record<
              string,
              number
            >;
            const running = namespace === null ? Object.values(busy) : [busy[namespace] ?? 0];
            if (running.some((n) => n > 0)) return false;
          }
          return true;
        },
        { timeout: 20_000, interval: 20, what },
      );
    const registered = async (pid: number) =>
      (await db.keys('nsro:proc:*')).some((key) => key.includes(`:${pid}:`));

    load = new Load(apps, options.concurrency ?? 12);
    load.start();
    // Under load: every process has committed writes.
    await waitFor(
      async () => {
        const pids = new Set((await commitsAfter(null)).map((e) => e.split(' ')[1]));
        return apps.every((a) => pids.has(String(a.pid)));
      },
      { timeout: 20_000, interval: 20, what: 'every app committing writes' },
    );

    // 1. The fence under load.
    const fence = await nsro(url, ['enable', 'acme', '--wait', '--timeout', '20s'], mark('MARK 1'));
    // Writes to the other namespaces went on after the marker, and every acme write admitted
    // before it has ended.
    await waitFor(
      async () =>
        (await commitsAfter('MARK 1')).filter((e) => namespaceOf(e) !== 'acme').length >= 10,
      { timeout: 20_000, interval: 20, what: 'writes to the other namespaces after MARK 1' },
    );
    await settled('acme', 'no acme write running after MARK 1');
    await disable('acme', '1');
    const inFence = between(await db.lrange('commits', 0, -1), 'MARK 1', 'OPEN 1');

    // 2. A process dies with acme writes in flight while a second wait runs.
    const victim = apps[apps.length - 1] as App;
    // The reopening has reached the victim.
    await waitFor(async () => (await post(victim.port, '/acme/write?ms=0')) === 201, {
      timeout: 10_000,
      interval: 20,
      what: 'the victim admitting acme writes again',
    });
    const slow = [1, 2].map(() => post(victim.port, '/acme/write?ms=10000').catch(() => 0));
    await waitFor(
      async () => (JSON.parse((await get(victim.port, '/-/busy')).body).acme ?? 0) >= 2,
      { timeout: 10_000, what: 'the victim running two acme writes' },
    );
    let victimInflight = 0;
    let killedAt = 0;
    let killing: Promise<void> | undefined;
    const victimRegistered = { atKill: false, atExit: true };
    const kill = await nsro(
      url,
      ['enable', 'acme', '--wait', '--timeout', '20s'],
      async () => {
        // Checked right after the marker: the victim cannot register again (it is dead).
        const [, atExit] = await Promise.all([mark('MARK 2')(), registered(victim.pid)]);
        victimRegistered.atExit = atExit;
      },
      (line) => {
        // Printed once the state is set, right before the wait starts.
        if (killing !== undefined || !line.startsWith('acme: maintenance')) return;
        killing = (async () => {
          // Killed once the wait has begun (its epoch is set), so the wait counts the victim.
          await waitFor(async () => (await db.hget('nsro:fence:acme', 'epoch')) === '2', {
            timeout: 10_000,
            interval: 5,
            what: 'the second wait to begin',
          });
          victimInflight = JSON.parse((await get(victim.port, '/-/busy')).body).acme ?? 0;
          victimRegistered.atKill = await registered(victim.pid);
          victim.child.kill('SIGKILL');
          killedAt = performance.now();
        })();
      },
    );
    await killing;
    await Promise.all(slow);
    await settled('acme', 'no acme write running after MARK 2');
    await disable('acme', '2');

    // 3. The instance, once writes flow again.
    await waitFor(async () => (await commitsAfter('OPEN 2')).length > 0, {
      timeout: 20_000,
      interval: 20,
      what: 'commits after OPEN 2',
    });
    const instance = await nsro(url, ['enable', '*', '--wait', '--timeout', '20s'], mark('MARK *'));
    await settled(null, 'no write running after MARK *');
    await disable('*', '*');

    // 4. A job that never ends: the wait times out and names its process.
    const holder = apps[0] as App;
    // The instance's reopening may take a moment to reach the holder.
    await waitFor(async () => (await get(holder.port, '/-/hold/acme')).status === 202, {
      timeout: 10_000,
      interval: 50,
      what: 'a job on acme admitted',
    });
    const timedOut = await nsro(url, ['enable', 'acme', '--wait', '--timeout', '1s']);
    await get(holder.port, '/-/release');
    const after = await nsro(url, ['wait', 'acme', '--timeout', '20s']);

    await load.stop();
    const all = await db.lrange('commits', 0, -1);
    const acmeOnly = (entries: string[]) => entries.filter((e) => namespaceOf(e) === 'acme');
    return {
      heartbeatTtl,
      fence: {
        cli: fence,
        lateAcme: acmeOnly(inFence),
        othersAfter: inFence.filter((e) => ['beta', 'gamma', 'delta'].includes(namespaceOf(e)))
          .length,
      },
      kill: {
        cli: kill,
        victimInflight,
        victimPid: victim.pid,
        victimRegistered,
        killToExitMs: Math.round(kill.exitedAt - killedAt),
        lateAcme: acmeOnly(between(all, 'MARK 2', 'OPEN 2')),
      },
      instance: { cli: instance, late: between(all, 'MARK *', 'OPEN *') },
      timeout: { holderPid: holder.pid, cli: timedOut, after },
      load: {
        statuses: Object.fromEntries(
          [...load.statuses].map(([ns, byStatus]) => [ns, Object.fromEntries(byStatus)]),
        ),
        errors: load.errors,
        commits: all.filter((e) => !/^(MARK|OPEN) /.test(e)).length,
      },
    };
  } finally {
    await load?.stop();
    for (const app of apps) if (app.alive) app.child.kill('SIGTERM');
    // A fallback for an app that does not stop on SIGTERM, not a synchronisation.
    await Promise.race([
      Promise.all(apps.map((a) => a.exited)),
      sleep(5000).then(() => {
        for (const app of apps) if (app.alive) app.child.kill('SIGKILL');
      }),
    ]);
    client?.disconnect();
    await redis?.stop();
  }
}
