import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { bypassKeys, verifyBypassToken } from '../../src/bypass/token.js';
import { EXIT, redisUrl, USAGE } from '../../src/cli/args.js';
import { describeState, main, parseDuration } from '../../src/cli/main.js';
import { psTable } from '../../src/cli/output.js';
import type { NamespaceState } from '../../src/state/values.js';
import { BIN, ROOT } from '../helpers/dist.js';
import {
  connectClient,
  freePort,
  type RedisServer,
  stallProxy,
  startRedis,
  waitFor,
} from '../helpers/redis.js';

/**
 * The operator CLI (`namespace-read-only` / `nsro`), end to end: the built `dist/bin.js` run as a
 * child process against a real, private `redis-server`, checked with the real `redis-cli`.
 * Bad input must print one line on stderr, exit non-zero (2 for usage errors) and never even
 * connect to Redis.
 */

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the first bytes on stderr to the exit (`null`: nothing on stderr). */
  exitAfterStderrMs: number | null;
}

let redis: RedisServer;
/** How much `total_connections_received` grows per `redis-cli` call of our own (measured). */
let connectionStep = 1;

/**
 * Runs `node dist/bin.js ...args`. `--redis <our server>` is appended unless `redis` is null
 * (or another URL). REDIS_URL is removed from the environment unless `env` sets it. A CLI still
 * running after `killAfter` ms is SIGKILLed (its exit code is then `null`).
 */
function nsro(
  args: readonly string[],
  options: { redis?: string | null; env?: Record<string, string>; killAfter?: number } = {},
): Promise<Run> {
  const url = options.redis === undefined ? redis.url : options.redis;
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  if (options.env?.REDIS_URL === undefined) delete env.REDIS_URL;
  let stderrAt: number | null = null;
  return new Promise((done, fail) => {
    const child = spawn(
      process.execPath,
      [BIN, ...args, ...(url === null ? [] : ['--redis', url])],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderrAt ??= performance.now();
      stderr += chunk.toString('utf8');
    });
    // A CLI that hangs fails the test instead of the whole run.
    const timer = setTimeout(() => child.kill('SIGKILL'), options.killAfter ?? 15_000);
    child.once('error', fail);
    child.once('exit', () => {
      const exitedAt = performance.now();
      child.once('close', (code) => {
        clearTimeout(timer);
        const exitAfterStderrMs = stderrAt === null ? null : Math.round(exitedAt - stderrAt);
        done({ code, stdout, stderr, exitAfterStderrMs });
      });
    });
  });
}

/** Every key with its value, for "nothing was written" checks. */
async function snapshot(): Promise<Record<string, string>> {
  const keys = (await redis.cli('KEYS', '*')).split('\n').filter((k) => k !== '');
  const result: Record<string, string> = {};
  for (const key of keys) result[key] = await redis.cli('GET', key);
  return result;
}

async function connections(): Promise<number> {
  const info = await redis.cli('INFO', 'stats');
  const m = /total_connections_received:(\d+)/.exec(info);
  if (m?.[1] === undefined) throw new Error(`no total_connections_received in INFO:\n${info}`);
  return Number(m[1]);
}

/**
 * Every key under the prefix but the index, which lists the namespaces that have a state, and
 * the audit stream, which records every change.
 */
function nsroKeys(): Promise<string[]> {
  return redis.cli('KEYS', 'nsro:*').then((out) =>
    out
      .split('\n')
      .filter((k) => k !== '' && k !== 'nsro:index' && k !== 'nsro:audit')
      .sort(),
  );
}

const ONE_LINE = /^nsro: [^\n]+\n$/;

/**
 * Commands that change no data: our own checks send them, and so may a CLI that connects to be
 * told that it asked for a database the server does not have.
 */
const READ_ONLY_COMMANDS = new Set([
  'info',
  'keys',
  'get',
  'mget',
  'pttl',
  'ping',
  'hello',
  'client|setinfo',
  'client|setname',
  'select',
  'config|get',
  'command',
  'command|docs',
  'dbsize',
]);

interface WriteCounters {
  /** Redis's own count of changes to the data (`rdb_changes_since_last_save`), server-wide. */
  readonly dirty: number;
  /** `INFO commandstats`: calls per command. */
  readonly calls: ReadonlyMap<string, number>;
}

async function writeCounters(): Promise<WriteCounters> {
  const persistence = await redis.cli('INFO', 'persistence');
  const dirty = Number(/rdb_changes_since_last_save:(\d+)/.exec(persistence)?.[1]);
  if (!Number.isInteger(dirty)) throw new Error(`no rdb_changes_since_last_save:\n${persistence}`);
  const calls = new Map<string, number>();
  for (const m of (await redis.cli('INFO', 'commandstats')).matchAll(
    /^cmdstat_([^:]+):calls=(\d+)/gm,
  )) {
    calls.set(m[1] as string, Number(m[2]));
  }
  return { dirty, calls };
}

/** What Redis saw since `before`: changes to its data, and every command that is not a read. */
async function writesSince(
  before: WriteCounters,
): Promise<{ changes: number; commands: string[] }> {
  const after = await writeCounters();
  const commands = [...after.calls]
    .filter(([name, n]) => n > (before.calls.get(name) ?? 0) && !READ_ONLY_COMMANDS.has(name))
    .map(([name]) => name)
    .sort();
  return { changes: after.dirty - before.dirty, commands };
}

const NO_WRITE = { changes: 0, commands: [] };

/** node's parseArgs wording, which must never reach the operator. */
const RAW_PARSER_TEXT =
  /Unknown option|To specify|Did you forget|argument missing|argument is ambiguous/;

beforeAll(async () => {
  redis = await startRedis();
  const a = await connections();
  const b = await connections();
  connectionStep = b - a;
}, 120_000);

afterAll(async () => {
  await redis?.stop();
});

beforeEach(async () => {
  await redis.cli('FLUSHALL');
});

describe('the built binary', () => {
  it('is what package.json names for both bin names, with a node shebang', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    // Without `./`: npm 11's publish drops a `./`-prefixed bin from the manifest it sends.
    expect(pkg.bin).toEqual({
      'namespace-read-only': 'dist/bin.js',
      nsro: 'dist/bin.js',
    });
    expect(readFileSync(BIN, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('runs as an executable on its own (shebang), not only through `node`', () => {
    const out = execFileSync(BIN, ['status', 'acme', '--redis', redis.url], { encoding: 'utf8' });
    expect(out).toBe('acme: writable\n');
  });
});

describe('enable', () => {
  it('`--at <time> --for 30m` schedules a window; `--state frozen|report` sets the value', async () => {
    const at = new Date(Date.now() + 3_600_000);
    const r = await nsro(['enable', 'acme', '--at', at.toISOString(), '--for', '30m']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^acme: maintenance starts \S+Z \(in (1h0s|59m5\ds)\)/);
    const stored = JSON.parse(await redis.cli('GET', 'nsro:state:acme'));
    expect(stored).toMatchObject({ state: 'maintenance', startsAt: at.toISOString() });
    expect(new Date(stored.until).getTime()).toBe(at.getTime() + 30 * 60_000);
    // The key lives until the window's end.
    expect(Number(await redis.cli('TTL', 'nsro:state:acme'))).toBeGreaterThan(5390);

    expect((await nsro(['enable', 'beta', '--state', 'frozen'])).stdout).toBe('beta: frozen\n');
    expect(await redis.cli('GET', 'nsro:state:beta')).toBe('frozen');
    expect((await nsro(['enable', 'gamma', '--state', 'report'])).code).toBe(0);
    expect(await redis.cli('GET', 'nsro:state:gamma')).toBe('report');

    for (const bad of [
      ['enable', 'x', '--state', 'open'],
      ['enable', 'x', '--at', '2001-01-01T00:00:00Z'],
      ['enable', 'x', '--at', 'tomorrow'],
      ['status', '--at', at.toISOString()],
    ]) {
      const b = await nsro(bad);
      expect({ bad, code: b.code }).toEqual({ bad, code: 2 });
    }
    expect(await redis.cli('EXISTS', 'nsro:state:x')).toBe('0');
  });

  it('`enable acme` writes the plain maintenance value, without a TTL', async () => {
    const r = await nsro(['enable', 'acme']);
    expect(r).toMatchObject({ code: 0, stderr: '', stdout: 'acme: maintenance\n' });
    expect(await redis.cli('GET', 'nsro:state:acme')).toBe('maintenance');
    expect(await redis.cli('TTL', 'nsro:state:acme')).toBe('-1');
    expect(await nsroKeys()).toEqual(['nsro:state:acme']);
    expect(await redis.cli('SMEMBERS', 'nsro:index')).toBe('acme');
  });

  it('`--for 30m --message --reason` writes JSON with a 30-minute key TTL', async () => {
    const before = Date.now();
    const r = await nsro([
      'enable',
      'acme',
      '--for',
      '30m',
      '--message',
      'Moving',
      '--reason',
      'migration',
    ]);
    const after = Date.now();
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(
      /^acme: maintenance "Moving" ends \S+Z \((30m0s|29m5\ds) left\) reason: migration\n$/,
    );

    const ttl = Number(await redis.cli('TTL', 'nsro:state:acme'));
    expect(ttl).toBeGreaterThanOrEqual(1795);
    expect(ttl).toBeLessThanOrEqual(1800);

    const value = JSON.parse(await redis.cli('GET', 'nsro:state:acme')) as Record<string, string>;
    expect(value).toEqual({
      state: 'maintenance',
      message: 'Moving',
      reason: 'migration',
      until: expect.any(String),
    });
    const until = Date.parse(value.until as string);
    expect(until).toBeGreaterThanOrEqual(before + 1_800_000);
    expect(until).toBeLessThanOrEqual(after + 1_800_000);
  });

  it('`--until <ISO 10 minutes ahead>` stores that exact date with a ~600 s TTL', async () => {
    const iso = new Date(Date.now() + 600_000).toISOString();
    const r = await nsro(['enable', 'acme', '--until', iso]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^acme: maintenance ends \S+Z \((10m0s|9m5\ds) left\)\n$/);
    const ttl = Number(await redis.cli('TTL', 'nsro:state:acme'));
    expect(ttl).toBeGreaterThanOrEqual(595);
    expect(ttl).toBeLessThanOrEqual(600);
    expect(JSON.parse(await redis.cli('GET', 'nsro:state:acme'))).toEqual({
      state: 'maintenance',
      until: iso,
    });
  });

  it('enabling again without --for makes the maintenance open-ended (TTL removed)', async () => {
    expect((await nsro(['enable', 'acme', '--for', '5m'])).code).toBe(0);
    expect(Number(await redis.cli('TTL', 'nsro:state:acme'))).toBeGreaterThan(0);
    expect((await nsro(['enable', 'acme'])).code).toBe(0);
    expect(await redis.cli('TTL', 'nsro:state:acme')).toBe('-1');
    expect(await redis.cli('GET', 'nsro:state:acme')).toBe('maintenance');
  });

  it('`enable Acme/Team` writes the lower-cased root namespace key', async () => {
    const r = await nsro(['enable', 'Acme/Team']);
    expect(r).toMatchObject({ code: 0, stdout: 'acme: maintenance\n' });
    expect(await nsroKeys()).toEqual(['nsro:state:acme']);
    expect((await nsro(['status', 'ACME'])).stdout).toBe('acme: maintenance\n');
  });

  it("`enable '*'` / `disable '*'` set and clear the instance key only", async () => {
    await redis.cli('SET', 'nsro:state:acme', 'maintenance');
    const on = await nsro(['enable', '*', '--message', 'Upgrading']);
    expect(on).toMatchObject({ code: 0, stdout: '*: maintenance "Upgrading"\n' });
    expect(JSON.parse(await redis.cli('GET', 'nsro:state:*'))).toEqual({
      state: 'maintenance',
      message: 'Upgrading',
    });
    expect(await nsroKeys()).toEqual(['nsro:state:*', 'nsro:state:acme']);

    const off = await nsro(['disable', '*']);
    expect(off).toMatchObject({ code: 0, stdout: '*: writable\n' });
    expect(await redis.cli('EXISTS', 'nsro:state:*')).toBe('0');
    expect(await nsroKeys()).toEqual(['nsro:state:acme']);
  });

  it('reads the Redis URL from REDIS_URL when --redis is absent', async () => {
    const r = await nsro(['enable', 'acme'], { redis: null, env: { REDIS_URL: redis.url } });
    expect(r).toMatchObject({ code: 0, stderr: '', stdout: 'acme: maintenance\n' });
    expect(await redis.cli('GET', 'nsro:state:acme')).toBe('maintenance');
  });

  it('--redis wins over REDIS_URL', async () => {
    const closed = await freePort();
    const r = await nsro(['enable', 'acme'], {
      env: { REDIS_URL: `redis://127.0.0.1:${closed}` },
    });
    expect(r.code).toBe(0);
    expect(await redis.cli('GET', 'nsro:state:acme')).toBe('maintenance');
  });

  it('`enable acme --wait` with no guard in the fence says so and returns at once', async () => {
    const r = await nsro(['enable', 'acme', '--wait']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'acme: fenced: no live process takes part in the fence (guards opt in with fence: true)',
    );
    expect(await redis.cli('GET', 'nsro:state:acme')).toBe('maintenance');
  });
});

describe('disable, status, list', () => {
  it('`disable acme` deletes the key (TTL or not) and leaves the others', async () => {
    await redis.cli('SET', 'nsro:state:acme', 'maintenance', 'EX', '1800');
    await redis.cli('SET', 'nsro:state:beta', 'maintenance');
    const r = await nsro(['disable', 'acme']);
    expect(r).toMatchObject({ code: 0, stderr: '', stdout: 'acme: writable\n' });
    expect(await redis.cli('EXISTS', 'nsro:state:acme')).toBe('0');
    expect(await nsroKeys()).toEqual(['nsro:state:beta']);
  });

  it('`disable` of a namespace without a state succeeds and writes nothing', async () => {
    const r = await nsro(['disable', 'acme']);
    expect(r).toMatchObject({ code: 0, stdout: 'acme: writable\n' });
    expect(await redis.cli('DBSIZE')).toBe('0');
  });

  it('`status acme` prints the state, message, end and time left', async () => {
    await redis.cli(
      'SET',
      'nsro:state:acme',
      JSON.stringify({ state: 'maintenance', message: 'Moving', reason: 'migration' }),
      'EX',
      '1800',
    );
    const r = await nsro(['status', 'acme']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(
      /^acme: maintenance "Moving" ends \d{4}-\d\d-\d\dT[\d:.]+Z \((30m0s|29m5\ds) left\) reason: migration\n$/,
    );
  });

  it('`status acme` reports writable when there is no key', async () => {
    expect(await nsro(['status', 'acme'])).toMatchObject({ code: 0, stdout: 'acme: writable\n' });
  });

  it('`status` without a namespace prints a table of every state, sorted, whatever redis-cli typed', async () => {
    await redis.cli('SET', 'nsro:state:*', 'maintenance');
    await redis.cli('SET', 'nsro:state:beta', 'active');
    await redis.cli('SET', 'nsro:state:typo', 'maintenace');
    await redis.cli('SET', 'other:state:elsewhere', 'maintenance');
    const r = await nsro(['status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'NAMESPACE  STATE         REASON  SINCE  UNTIL  REMAINING  STARTS',
        '*          maintenance   -       -      -      -          -',
        'beta       active        -       -      -      -          -',
        'typo       unrecognised  -       -      -      -          -',
        'typo: unrecognised value "maintenace": treated as maintenance',
        '',
      ].join('\n'),
    );
  });

  it('`status`: since comes from the audit trail, until/remaining from the state or the key TTL, starts from a window', async () => {
    const at = new Date(Date.now() + 3_600_000);
    expect((await nsro(['enable', 'acme', '--for', '30m', '--reason', 'migration'])).code).toBe(0);
    expect((await nsro(['enable', 'delta', '--at', at.toISOString(), '--for', '1h'])).code).toBe(0);
    // Set by the CLI, then changed with redis-cli: the trail does not say since when.
    expect((await nsro(['enable', 'beta'])).code).toBe(0);
    await redis.cli('SET', 'nsro:state:beta', 'frozen');
    await redis.cli('SET', 'nsro:state:gamma', 'maintenance', 'EX', '90');
    await redis.cli(
      'SET',
      'nsro:state:zeta',
      '{"state":"maintenance","until":"2099-01-01T00:00:00Z"}',
    );
    const r = await nsro(['status']);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^NAMESPACE +STATE +REASON +SINCE +UNTIL +REMAINING +STARTS$/);
    const iso = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';
    expect(lines[1]).toMatch(
      new RegExp(`^acme +maintenance +migration +${iso} +${iso} +(30m0s|29m[45]\\ds) +-$`),
    );
    expect(lines[2]).toMatch(/^beta +frozen +- +- +- +- +-$/);
    expect(lines[3]).toMatch(
      new RegExp(
        `^delta +maintenance +- +${iso} +${iso} +(2h0s|1h59m[45]\\ds) +${iso} \\((in 1h0s|in 59m[45]\\ds)\\)$`,
      ),
    );
    expect(lines[4]).toMatch(
      new RegExp(`^gamma +maintenance +- +- +${iso} +(1m30s|1m[12]\\ds) +-$`),
    );
    expect(lines[5]).toMatch(/^zeta +maintenance +- +- +2099-01-01T00:00:00Z +~\d+h\d+m\d+s +-$/);
    expect(lines.slice(6)).toEqual([
      '~: the expected end (until) of a state without a key TTL: it does not end by itself',
      '',
    ]);
  });

  it('`status` with no state anywhere says everything is writable', async () => {
    const r = await nsro(['status']);
    expect(r).toMatchObject({
      code: 0,
      stdout: 'no namespace has a state: everything is writable\n',
    });
  });

  it('`list` prints one `namespace<TAB>state` line per key, sorted', async () => {
    expect(await nsro(['list'])).toMatchObject({ code: 0, stdout: '' });
    await redis.cli('SET', 'nsro:state:zeta', 'maintenance', 'EX', '60');
    await redis.cli('SET', 'nsro:state:beta', 'active');
    await redis.cli('SET', 'nsro:state:*', '{"state":"maintenance","message":"x"}');
    await redis.cli('SET', 'other:state:elsewhere', 'maintenance');
    const r = await nsro(['list']);
    expect(r).toMatchObject({
      code: 0,
      stderr: '',
      stdout: '*\tmaintenance\nbeta\tactive\nzeta\tmaintenance\n',
    });
  });

  it('--prefix other: uses other:state:<ns> for every command', async () => {
    expect((await nsro(['enable', 'acme', '--prefix', 'other:'])).code).toBe(0);
    expect(await redis.cli('GET', 'other:state:acme')).toBe('maintenance');
    expect(await nsroKeys()).toEqual([]);

    expect((await nsro(['status', 'acme', '--prefix', 'other:'])).stdout).toBe(
      'acme: maintenance\n',
    );
    expect((await nsro(['status', 'acme'])).stdout).toBe('acme: writable\n');
    expect((await nsro(['list', '--prefix', 'other:'])).stdout).toBe('acme\tmaintenance\n');
    expect((await nsro(['list'])).stdout).toBe('');

    expect((await nsro(['disable', 'acme', '--prefix', 'other:'])).code).toBe(0);
    // What is left is the audit trail of both changes, under the same prefix.
    expect(await redis.cli('KEYS', '*')).toBe('other:audit');
    expect(await redis.cli('XLEN', 'other:audit')).toBe('2');
  });
});

/** The application of the operator-view tests: a plain guard on a `RedisStateStore`. */
const APP = join(ROOT, 'test', 'e2e', 'fixtures', 'guarded-app.mjs');

interface AppProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly exited: Promise<void>;
  /** Ends it the polite way (its store deletes its announcement), SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/** One application process (test/e2e/fixtures/guarded-app.mjs), ready and announced. */
async function startApp(env: Record<string, string> = {}): Promise<AppProcess> {
  const child = spawn(process.execPath, [APP], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: redis.url, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString('utf8')).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const ready = await waitFor(
    () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`app exited during start-up:\n${out}`);
      }
      return /ready (\d+) (\d+)/.exec(out);
    },
    { timeout: 30_000, interval: 20, what: 'the app to be ready' },
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${String(error)}\n${out}`);
  });
  return {
    child,
    port: Number(ready[1]),
    pid: Number(ready[2]),
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface PsJson {
  processes: {
    id: string;
    host: string;
    pid: number;
    mode: string;
    cause: string | null;
    knowledgeAge: number | null;
    states: number | null;
    inflight: Record<string, number> | null;
    announcedAt: string;
    announcedAgo: number | null;
  }[];
}

async function psJson(): Promise<PsJson> {
  const r = await nsro(['ps', '--json']);
  if (r.code !== 0) throw new Error(`nsro ps --json exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as PsJson;
}

describe('the operator view: `status` and `ps` against two application processes', () => {
  const apps: AppProcess[] = [];
  const launch = async (count: number, env: Record<string, string> = {}) => {
    const started = await Promise.all(Array.from({ length: count }, () => startApp(env)));
    apps.push(...started);
    return started;
  };
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.stop()));
  });

  it('`ps` lists both (complete, their pids); a SIGKILLed one drops out once its announcement expires', async () => {
    expect(await nsro(['ps'])).toMatchObject({
      code: 0,
      stdout:
        'no live guarding process announces itself (a process appears once its store has started)\n',
    });
    const [a, b] = (await launch(2)) as [AppProcess, AppProcess];

    const r = await nsro(['ps', '--json']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.split('\n')).toHaveLength(2); // one document, one line
    const { processes } = JSON.parse(r.stdout) as PsJson;
    expect(processes.map((p) => p.pid).sort()).toEqual([a.pid, b.pid].sort());
    for (const p of processes) {
      expect(p).toMatchObject({
        host: os.hostname(),
        mode: 'complete',
        cause: null,
        states: 0,
        inflight: null, // no fence: not tracked
      });
      expect(p.id).toMatch(new RegExp(`^${os.hostname()}:${p.pid}:[a-z0-9]+$`));
      expect(p.knowledgeAge).toBeGreaterThanOrEqual(0);
      expect(p.announcedAgo).toBeGreaterThanOrEqual(0);
      expect(p.announcedAgo).toBeLessThan(3000);
    }

    const text = await nsro(['ps']);
    expect(text.code).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toMatch(/^PROCESS +MODE +CAUSE +KNOWLEDGE AGE +STATES +IN FLIGHT +ANNOUNCED$/);
    for (const app of [a, b]) {
      expect(text.stdout).toMatch(
        new RegExp(
          `^\\S+:${app.pid}:\\S+ +complete +- +\\d+\\.\\ds +0 +n/a \\(no fence\\) +\\d+\\.\\ds ago$`,
          'm',
        ),
      );
    }
    expect(lines.slice(3)).toEqual([
      'n/a (no fence): writes in flight are not tracked without fence: true',
      '',
    ]);

    // A crash says no goodbye: the process is listed until its announcement expires (3 s after
    // its last renewal), then no more.
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await a.exited;
    await waitFor(
      async () => {
        const pids = (await psJson()).processes.map((p) => p.pid);
        return pids.length === 1 && pids[0] === b.pid;
      },
      { timeout: 15_000, interval: 200, what: 'the killed process to drop out of `nsro ps`' },
    );
    console.log(`ps: a SIGKILLed process dropped out after ${Date.now() - killedAt} ms`);
    // The survivor is still announced, renewed all along.
    const [survivor] = (await psJson()).processes;
    expect(survivor).toMatchObject({ pid: b.pid, mode: 'complete' });
  }, 60_000);

  it('`status` shows acme (maintenance, reason, until, remaining) and beta (frozen) as both apps enforce them; --json parses', async () => {
    const [a, b] = (await launch(2)) as [AppProcess, AppProcess];
    expect((await nsro(['enable', 'acme', '--for', '30m', '--reason', 'migration'])).code).toBe(0);
    await redis.cli('SET', 'nsro:state:beta', 'frozen');
    // Both processes obey: acme and beta refuse writes, gamma takes them.
    for (const app of [a, b]) {
      const post = (ns: string) =>
        fetch(`http://127.0.0.1:${app.port}/${ns}/write`, { method: 'POST' }).then(
          (res) => res.status,
        );
      await waitFor(async () => (await post('beta')) === 503, {
        what: `beta refused by ${app.pid}`,
      });
      expect(await post('acme')).toBe(503);
      expect(await post('gamma')).toBe(201);
    }

    const r = await nsro(['status']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const iso = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^NAMESPACE +STATE +REASON +SINCE +UNTIL +REMAINING +STARTS$/);
    expect(lines[1]).toMatch(
      new RegExp(`^acme +maintenance +migration +${iso} +${iso} +(30m0s|29m[0-5]\\ds) +-$`),
    );
    expect(lines[2]).toMatch(/^beta +frozen +- +- +- +- +-$/);
    expect(lines.slice(3)).toEqual(['']);

    const json = await nsro(['status', '--json']);
    expect(json).toMatchObject({ code: 0, stderr: '' });
    expect(json.stdout.split('\n')).toHaveLength(2);
    const { namespaces } = JSON.parse(json.stdout) as {
      namespaces: Record<string, string | number | null>[];
    };
    expect(namespaces.map((n) => n.namespace)).toEqual(['acme', 'beta']);
    const [acme, beta] = namespaces;
    expect(acme).toMatchObject({
      namespace: 'acme',
      state: 'maintenance',
      reason: 'migration',
      message: null,
      unrecognized: null,
      startsAt: null,
    });
    for (const field of ['since', 'until', 'expiresAt'] as const) {
      expect(new Date(String(acme?.[field])).toISOString()).toBe(acme?.[field]);
    }
    expect(acme?.remainingMs).toBeGreaterThan(29 * 60_000);
    expect(acme?.remainingMs).toBeLessThanOrEqual(30 * 60_000);
    expect(beta).toEqual({
      namespace: 'beta',
      state: 'frozen',
      unrecognized: null,
      message: null,
      reason: null,
      since: null, // set with redis-cli: the audit trail does not know
      until: null,
      expiresAt: null,
      remainingMs: null,
      startsAt: null,
    });

    // Each process holds both states.
    await waitFor(
      async () => {
        const { processes } = await psJson();
        return processes.length === 2 && processes.every((p) => p.states === 2);
      },
      { what: 'both processes holding 2 states' },
    );
  }, 60_000);

  it('with fence: true, `ps` shows the writes in flight per namespace', async () => {
    const [app] = (await launch(1, { FENCE: '1' })) as [AppProcess];
    const hold = await fetch(`http://127.0.0.1:${app.port}/-/hold/acme`);
    expect(hold.status).toBe(202);
    await waitFor(async () => (await psJson()).processes[0]?.inflight?.acme === 1, {
      what: 'a write in flight to acme',
    });
    const text = await nsro(['ps']);
    expect(text.stdout).toMatch(
      new RegExp(
        `^\\S+:${app.pid}:\\S+ +complete +- +\\d+\\.\\ds +0 +1 \\(acme 1\\) +\\d+\\.\\ds ago$`,
        'm',
      ),
    );
    expect(text.stdout).not.toContain('n/a');
    expect((await fetch(`http://127.0.0.1:${app.port}/-/release`)).status).toBe(200);
    await waitFor(async () => (await psJson()).processes[0]?.inflight?.['*'] === 0, {
      what: 'no write in flight',
    });
  }, 60_000);
});

/** Keys meant to persist: the states, the index of namespaces with a state, the audit trail. */
const PERSISTENT_KEY = /^nsro:(state:.*|index|audit)$/;

/** Every key but those meant to persist, with its PTTL (-1: none, -2: gone meanwhile). */
async function bookkeepingTtls(): Promise<Record<string, number>> {
  const keys = (await redis.cli('KEYS', '*')).split('\n').filter((k) => k !== '');
  const ttls: Record<string, number> = {};
  for (const key of keys.filter((k) => !PERSISTENT_KEY.test(k)).sort()) {
    ttls[key] = Number(await redis.cli('PTTL', key));
  }
  return ttls;
}

describe('fence bookkeeping expires: after a wait, every key but states, index and audit has a TTL', () => {
  const apps: AppProcess[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.stop()));
  });

  it('`enable --wait` and `wait` with no guard in the fence: the fence hash expires', async () => {
    expect((await nsro(['enable', 'acme', '--wait'])).code).toBe(0);
    expect((await nsro(['wait', 'acme'])).code).toBe(0);
    const ttls = await bookkeepingTtls();
    expect(Object.keys(ttls)).toEqual(['nsro:fence:acme']);
    expect(ttls['nsro:fence:acme']).toBeGreaterThan(0);
  });

  it('a wait acknowledged by a guard with fence: true leaves nothing without a TTL', async () => {
    const app = await startApp({ FENCE: '1' });
    apps.push(app);
    await waitFor(async () => Number(await redis.cli('ZCARD', 'nsro:procs')) === 1, {
      what: 'the app registered in the fence',
    });
    const r = await nsro(['enable', 'acme', '--wait', '--timeout', '20s', '--json']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const { fence } = JSON.parse(r.stdout) as { fence: { processes: { pid: number }[] } };
    expect(fence.processes.map((p) => p.pid)).toEqual([app.pid]);
    const wait = await nsro(['wait', 'acme', '--timeout', '20s']);
    expect(wait.stdout).toMatch(/^acme: fenced: 1 live process\(es\) acknowledged/);

    const ttls = await bookkeepingTtls();
    // The acknowledgement is in the hash, and the hash is among what is checked.
    expect(await redis.cli('HGET', 'nsro:fence:acme', 'epoch')).toBe('2');
    expect(Object.keys(ttls)).toContain('nsro:fence:acme');
    for (const [key, ttl] of Object.entries(ttls)) {
      expect({ key, expires: ttl > 0 }).toEqual({ key, expires: true });
    }
    // And once the process has gone, still nothing that stays for ever.
    await app.stop();
    for (const [key, ttl] of Object.entries(await bookkeepingTtls())) {
      expect({ key, expires: ttl > 0 }).toEqual({ key, expires: true });
    }
  }, 60_000);
});

describe('--json: one JSON document on stdout, for every command', () => {
  it('enable, status <ns>, list, log, disable, wait, token', async () => {
    const parse = async (args: string[], options?: Parameters<typeof nsro>[1]) => {
      const r = await nsro([...args, '--json'], options);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(r.stdout.split('\n')).toHaveLength(2);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const enabled = await parse(['enable', 'acme', '--message', 'Moving', '--reason', 'why']);
    expect(enabled).toMatchObject({
      namespace: 'acme',
      state: 'maintenance',
      message: 'Moving',
      reason: 'why',
      until: null,
      remainingMs: null,
    });
    expect(typeof enabled.since).toBe('string');
    expect(await parse(['status', 'acme'])).toEqual(enabled);
    expect(await parse(['status', 'beta'])).toMatchObject({ namespace: 'beta', state: null });
    expect(await parse(['list'])).toEqual({
      namespaces: [{ namespace: 'acme', state: 'maintenance' }],
    });
    const fenced = await parse(['enable', 'acme', '--wait', '--timeout', '5s']);
    expect(fenced).toMatchObject({
      namespace: 'acme',
      state: 'maintenance',
      fence: { namespace: 'acme', processes: [] },
    });
    expect(await parse(['wait', 'acme'])).toMatchObject({ namespace: 'acme', processes: [] });
    expect(await parse(['disable', 'acme', '--reason', 'done'])).toMatchObject({
      namespace: 'acme',
      state: null,
      since: null,
    });
    const { entries } = (await parse(['log', 'acme', '--limit', '2'])) as {
      entries: Record<string, unknown>[];
    };
    expect(entries).toHaveLength(2);
    expect(entries[0]).toMatchObject({ namespace: 'acme', to: null, reason: 'done' });
    expect(await parse(['ps'])).toEqual({ processes: [] });
    expect(await parse(['status'])).toEqual({ namespaces: [] });

    const secret = 'x'.repeat(40);
    const token = await parse(['token', 'acme', '--for', '30m'], {
      redis: null,
      env: { NSRO_BYPASS_SECRET: secret },
    });
    expect(token).toMatchObject({ namespace: 'acme' });
    const grant = verifyBypassToken(String(token.token), bypassKeys(secret), Date.now());
    expect(grant?.namespace).toBe('acme');
    expect(Date.parse(String(token.expiresAt))).toBeGreaterThan(Date.now() + 29 * 60_000);
  });

  it('errors stay one line on stderr, with the usual exit codes', async () => {
    const usage = await nsro(['ps', 'acme', '--json']);
    expect(usage).toMatchObject({ code: 2, stdout: '' });
    expect(usage.stderr).toMatch(ONE_LINE);
    expect(usage.stderr).toContain('ps takes no namespace');
    const port = await freePort();
    const down = await nsro(['status', '--json'], { redis: `redis://127.0.0.1:${port}` });
    expect(down).toMatchObject({ code: 4, stdout: '' });
    expect(down.stderr).toMatch(ONE_LINE);
  });
});

describe('the audit trail: every change appends to nsro:audit, `log` prints it', () => {
  /** The audit stream's entries, oldest first, each as a field -> value record. */
  async function stream(key = 'nsro:audit'): Promise<Record<string, string>[]> {
    const client = await connectClient(redis.port);
    try {
      const entries = await client.xrange(key, '-', '+');
      return entries.map(([, fields]) => {
        const record: Record<string, string> = {};
        for (let i = 0; i + 1 < fields.length; i += 2)
          record[fields[i] as string] = fields[i + 1] as string;
        return record;
      });
    } finally {
      client.disconnect();
    }
  }

  it('`enable acme --reason migration` then `log acme` shows who, what and why', async () => {
    const before = Date.now();
    expect((await nsro(['enable', 'acme', '--reason', 'migration'])).code).toBe(0);
    const value = await redis.cli('GET', 'nsro:state:acme');
    expect(JSON.parse(value)).toEqual({ state: 'maintenance', reason: 'migration' });

    const [entry, ...rest] = await stream();
    expect(rest).toEqual([]);
    expect(entry).toEqual({
      namespace: 'acme',
      from: '',
      to: value,
      actor: expect.stringMatching(/^\S+@\S+ \(nsro\)$/),
      reason: 'migration',
      time: expect.any(String),
    });
    const time = Date.parse(entry?.time ?? '');
    expect(time).toBeGreaterThanOrEqual(before - 1000);
    expect(time).toBeLessThanOrEqual(Date.now() + 1000);

    const r = await nsro(['log', 'acme']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(
      `${entry?.time} acme (none) -> ${value} by ${entry?.actor} reason: migration\n`,
    );
    expect(entry?.actor).toContain(`@${os.hostname()} (nsro)`);
  });

  it('`--actor` names who made the change; `disable --reason` records why; newest first', async () => {
    await nsro(['enable', 'acme', '--actor', 'alice (ticket 42)']);
    await nsro(['enable', 'Beta/Team', '--message', 'Moving', '--actor', 'bob']);
    await nsro(['disable', 'acme', '--actor', 'alice (ticket 42)', '--reason', 'done']);
    // Disabling what has no state changes nothing: no entry.
    await nsro(['disable', 'acme', '--actor', 'carol']);

    expect((await stream()).map((e) => [e.namespace, e.from, e.to, e.actor, e.reason])).toEqual([
      ['acme', '', 'maintenance', 'alice (ticket 42)', ''],
      ['beta', '', '{"state":"maintenance","message":"Moving"}', 'bob', ''],
      ['acme', 'maintenance', '', 'alice (ticket 42)', 'done'],
    ]);

    const all = await nsro(['log']);
    expect(all.code).toBe(0);
    expect(all.stdout.split('\n')).toEqual([
      expect.stringMatching(
        /^\S+Z acme maintenance -> \(none\) by alice \(ticket 42\) reason: done$/,
      ),
      expect.stringMatching(
        /^\S+Z beta \(none\) -> \{"state":"maintenance","message":"Moving"\} by bob$/,
      ),
      expect.stringMatching(/^\S+Z acme \(none\) -> maintenance by alice \(ticket 42\)$/),
      '',
    ]);
    expect((await nsro(['log', 'ACME', '--limit', '1'])).stdout).toMatch(
      /^\S+Z acme maintenance -> \(none\) by alice \(ticket 42\) reason: done\n$/,
    );
    expect((await nsro(['log', 'beta'])).stdout.split('\n')).toHaveLength(2);
    expect((await nsro(['log', '--limit', '2'])).stdout.split('\n')).toHaveLength(3);
  });

  it('`log` with no entries says so and exits 0; a plain redis-cli change appends nothing', async () => {
    expect(await nsro(['log'])).toMatchObject({ code: 0, stderr: '', stdout: 'no entries\n' });
    await redis.cli('SET', 'nsro:state:acme', 'maintenance');
    expect(await nsro(['log', 'acme'])).toMatchObject({
      code: 0,
      stdout: 'no entries for acme\n',
    });
    await nsro(['enable', 'beta']);
    expect(await nsro(['log', 'acme'])).toMatchObject({
      code: 0,
      stdout: 'no entries for acme\n',
    });
  });

  it('a value with a line break stays on one line', async () => {
    await nsro(['enable', 'acme', '--reason', 'two\nlines', '--actor', 'eve\nmallory']);
    const r = await nsro(['log']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toHaveLength(2);
    expect(r.stdout).toContain('by "eve\\nmallory" reason: "two\\nlines"');
  });
});

describe('bad input: one line on stderr, exit 2, nothing written, Redis never contacted', () => {
  const future = new Date(Date.now() + 3_600_000).toISOString();
  const cases: [string, string[], RegExp][] = [
    ['a name with a space', ['enable', 'bad name'], /invalid namespace name: "bad name"/],
    ['an encoded slash', ['enable', 'a%2Fb'], /invalid namespace name: "a%2Fb"/],
    ['a dot segment', ['enable', '..'], /invalid namespace name: "\.\."/],
    ['an empty name', ['enable', ''], /invalid namespace name: ""/],
    ['an invalid name to disable', ['disable', 'bad name'], /invalid namespace name/],
    ['an invalid name to status', ['status', '..'], /invalid namespace name/],
    ['a missing namespace', ['enable'], /enable needs a namespace/],
    ['duration 3x', ['enable', 'acme', '--for', '3x'], /bad duration "3x"/],
    [
      'duration 0m',
      ['enable', 'acme', '--for', '0m'],
      /bad duration "0m" \(must be more than zero\)/,
    ],
    ['duration --for=-5m', ['enable', 'acme', '--for=-5m'], /bad duration "-5m"/],
    [
      'duration --for -5m (a value that looks like an option)',
      ['enable', 'acme', '--for', '-5m'],
      /^nsro: --for needs a value \(one starting with '-' goes as --for=<value>\)/,
    ],
    ['duration abc', ['enable', 'acme', '--for', 'abc'], /bad duration "abc"/],
    ['a duration past any date', ['enable', 'acme', '--for', '999999999d'], /too long/],
    [
      '--for with --until',
      ['enable', 'acme', '--for', '30m', '--until', future],
      /either --for or --until/,
    ],
    [
      '--until in the past',
      ['enable', 'acme', '--until', '2001-01-01T00:00:00Z'],
      /--until 2001-01-01T00:00:00Z is in the past/,
    ],
    ['--until not a date', ['enable', 'acme', '--until', 'tomorrow'], /bad --until "tomorrow"/],
    ['--until not ISO', ['enable', 'acme', '--until', 'Dec 1 2099'], /bad --until/],
    // `--redis <url>` follows, so the parser sees `--until --redis`.
    ['--until without a value', ['enable', 'acme', '--until'], /^nsro: --until needs a value/],
    ['an unknown command', ['frob', 'acme'], /unknown command "frob"/],
    ['an unknown option', ['enable', 'acme', '--force'], /^nsro: unknown option --force \(see/],
    ['an unknown option with a value', ['status', '--forse=1'], /^nsro: unknown option --forse \(/],
    ['an unknown short option', ['enable', 'acme', '-f'], /^nsro: unknown option -f \(see/],
    [
      'a value for a flag that takes none',
      ['status', '--json=yes'],
      /^nsro: --json takes no value/,
    ],
    [
      'a reserved word as a namespace',
      ['enable', 'groups'],
      /^nsro: "groups" is a reserved top-level word, not a namespace \(GitLab allows no namespace by that name\) \(see/,
    ],
    ['a reserved word in another case', ['enable', 'API'], /"api" is a reserved top-level word/],
    [
      'groups/<name>, with the name to use',
      ['enable', 'Groups/Acme'],
      /"groups" is a reserved .*; for the group at \/groups\/acme, name acme \(see/,
    ],
    ['wait on a reserved word', ['wait', 'admin'], /"admin" is a reserved top-level word/],
    ['status of a reserved word', ['status', 'help'], /"help" is a reserved top-level word/],
    ['log of a reserved word', ['log', 'users'], /"users" is a reserved top-level word/],
    ['a token for a reserved word', ['token', 'explore'], /"explore" is a reserved top-level word/],
    ['an extra argument', ['enable', 'acme', 'extra'], /unexpected argument: extra/],
    [
      'disable with --message',
      ['disable', 'acme', '--message', 'hi'],
      /--message only goes with enable, not disable/,
    ],
    [
      'status with --for',
      ['status', 'acme', '--for', '5m'],
      /--for only goes with enable or token, not status/,
    ],
    ['list with a namespace', ['list', 'acme'], /list takes no namespace/],
    ['log with --limit 0', ['log', '--limit', '0'], /bad --limit "0"/],
    ['log with --limit abc', ['log', 'acme', '--limit', 'abc'], /bad --limit "abc"/],
    ['log of an invalid name', ['log', '..'], /invalid namespace name: "\.\."/],
    [
      'status with --actor',
      ['status', 'acme', '--actor', 'alice'],
      /--actor only goes with enable or disable, not status/,
    ],
    ['enable with --limit', ['enable', 'acme', '--limit', '5'], /--limit only goes with log/],
    ['log with --reason', ['log', '--reason', 'x'], /--reason only goes with enable or disable/],
    ['an empty --actor', ['enable', 'acme', '--actor', ' '], /--actor needs a name/],
  ];

  it.each(cases)('%s', async (_name, args, message) => {
    await redis.cli('SET', 'nsro:state:acme', 'active');
    await redis.cli('SET', 'nsro:state:seed', 'maintenance', 'EX', '600');
    const keys = await snapshot();
    const writes = await writeCounters();
    const before = await connections();

    const r = await nsro(args);

    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(RAW_PARSER_TEXT);
    expect(r.stderr).toContain("(see 'nsro --help')");
    // Validation happens before connecting: the CLI never opened a connection.
    expect((await connections()) - before).toBe(connectionStep);
    expect(await writesSince(writes)).toEqual(NO_WRITE);
    expect(await snapshot()).toEqual(keys);
  });

  it('the no-write check sees a write: a valid `enable` changes data with a script', async () => {
    const writes = await writeCounters();
    expect((await nsro(['enable', 'acme'])).code).toBe(0);
    const seen = await writesSince(writes);
    expect(seen.changes).toBeGreaterThan(0);
    expect(seen.commands.some((c) => c === 'eval' || c === 'evalsha')).toBe(true);
  });

  it("`disable` takes a reserved word, to remove a state set by other means; '*' stays valid", async () => {
    await redis.cli('SET', 'nsro:state:groups', 'maintenance');
    await redis.cli('SADD', 'nsro:index', 'groups');
    expect(await nsro(['disable', 'groups'])).toMatchObject({ code: 0, stderr: '' });
    expect(await redis.cli('EXISTS', 'nsro:state:groups')).toBe('0');
    expect((await nsro(['enable', '*'])).code).toBe(0);
    expect((await nsro(['wait', '*'])).code).toBe(0);
    expect((await nsro(['status', '*'])).stdout).toBe('*: maintenance\n');
  });
});

describe('a bad Redis URL is bad input (exit 2), not an unreachable server', () => {
  it.each([
    ['an http URL', { redis: 'http://127.0.0.1:6379' }, /bad --redis "http:\/\/127\.0\.0\.1:6379"/],
    ['not a URL', { redis: 'not-a-url' }, /bad --redis "not-a-url"/],
    ['a database that is not a number', { redis: 'redis://127.0.0.1:1/x' }, /bad database "x"/],
    [
      'credentials in a bad URL',
      { redis: 'http://op:s3cret@127.0.0.1:1' },
      /bad --redis "http:\/\/\*\*\*@/,
    ],
    ['REDIS_URL', { redis: null, env: { REDIS_URL: 'http://127.0.0.1:1' } }, /bad REDIS_URL/],
    ['an empty --redis', { redis: '' }, /bad --redis ""/],
    [
      'a database with a leading zero',
      { redis: 'redis://127.0.0.1:1/07' },
      /bad database "07" in --redis \(a whole number, e\.g\. \/0\)/,
    ],
    ['a negative database', { redis: 'redis://127.0.0.1:1/-1' }, /bad database "-1" in --redis/],
    [
      'an empty REDIS_URL: a variable left unfilled must not mean the local Redis',
      { redis: null, env: { REDIS_URL: '' } },
      /^nsro: REDIS_URL is set but empty: set it to a redis:\/\/ URL, unset it for redis:\/\/127\.0\.0\.1:6379, or use --redis \(see/,
    ],
  ] as const)('%s', async (_name, options, message) => {
    const writes = await writeCounters();
    const r = await nsro(['enable', 'acme'], options);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('s3cret');
    expect(r.stderr).not.toContain('cannot reach');
    expect(await writesSince(writes)).toEqual(NO_WRITE);
  });

  it('a database the server does not have (it has 16) is bad input, refused before any write', async () => {
    const keys = await snapshot();
    const writes = await writeCounters();
    const r = await nsro(['enable', 'acme', '--for', '5m'], { redis: `${redis.url}/16` });
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toBe(
      `nsro: Redis at ${redis.url}/16 has no database 16 (it has 16: 0 to 15) (see 'nsro --help')\n`,
    );
    expect(await writesSince(writes)).toEqual(NO_WRITE);
    expect(await snapshot()).toEqual(keys);
    // Nothing in any database (ioredis once went on in database 0 after a failed SELECT).
    expect(await redis.cli('INFO', 'keyspace')).not.toMatch(/^db\d+:/m);
  });

  it('a database the server has is used, for every command', async () => {
    const db15 = `${redis.url}/15`;
    expect(await nsro(['enable', 'acme'], { redis: db15 })).toMatchObject({ code: 0, stderr: '' });
    expect(await redis.cli('-n', '15', 'GET', 'nsro:state:acme')).toBe('maintenance');
    expect(await redis.cli('EXISTS', 'nsro:state:acme')).toBe('0');
    expect((await nsro(['status', 'acme'], { redis: db15 })).stdout).toBe('acme: maintenance\n');
    expect((await nsro(['status', 'acme'])).stdout).toBe('acme: writable\n');
    expect((await nsro(['list'], { redis: db15 })).stdout).toBe('acme\tmaintenance\n');
    expect((await nsro(['disable', 'acme'], { redis: db15 })).code).toBe(0);
    expect(await redis.cli('-n', '15', 'EXISTS', 'nsro:state:acme')).toBe('0');
  });

  it('--redis wins over an empty REDIS_URL', async () => {
    const r = await nsro(['enable', 'acme'], { env: { REDIS_URL: '' } });
    expect(r).toMatchObject({ code: 0, stderr: '', stdout: 'acme: maintenance\n' });
  });

  it('redisUrl: --redis, else REDIS_URL, else the local default; an empty REDIS_URL is refused', () => {
    expect(() => redisUrl(undefined, '')).toThrow(/REDIS_URL is set but empty/);
    expect(redisUrl(undefined, undefined)).toBe('redis://127.0.0.1:6379');
    expect(redisUrl('redis://h:1/2', 'redis://other:2')).toBe('redis://h:1/2');
    expect(redisUrl('redis://h:1/2', '')).toBe('redis://h:1/2');
    expect(redisUrl(undefined, 'rediss://h:1')).toBe('rediss://h:1');
    expect(redisUrl('/run/redis.sock', undefined)).toBe('/run/redis.sock');
  });
});

describe('Redis unreachable', () => {
  it('every command exits 4 as soon as it has said so, with one line naming the (redacted) URL', async () => {
    const port = await freePort();
    const url = `redis://operator:s3cret@127.0.0.1:${port}`;
    const runs = await Promise.all(
      [['enable', 'acme', '--for', '5m'], ['disable', 'acme'], ['status'], ['list'], ['ps']].map(
        (args) => nsro(args, { redis: url }),
      ),
    );
    for (const r of runs) {
      expect(r.code).toBe(4);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(ONE_LINE);
      expect(r.stderr).toContain(`cannot reach Redis at redis://***@127.0.0.1:${port}`);
      expect(r.stderr).not.toContain('s3cret');
      expect(r.stderr).not.toContain('--help');
      // A refused connection is known at once; nothing may keep the process alive once it has
      // reported it (ioredis' 2 s disconnect timer once did). Timed from the error line, so a
      // slow start-up does not count: 1 s is 10x the 100 ms disconnect timer the CLI sets, and
      // half the 2 s default it must not wait for.
      expect(r.exitAfterStderrMs).not.toBeNull();
      expect(r.exitAfterStderrMs).toBeLessThan(1000);
    }
  });

  it('a server that accepts but never answers ends in exit 4 by itself, not a hang', async () => {
    const proxy = await stallProxy(redis.port);
    try {
      proxy.stall();
      const url = `redis://127.0.0.1:${proxy.port}`;
      // Exit code 4, not SIGKILLed: it gave up by itself. 40 s is over 10x the CLI's 3 s
      // command budget, so a loaded machine cannot make a working CLI look hung.
      const runs = await Promise.all(
        [['enable', 'acme'], ['status']].map((args) =>
          nsro(args, { redis: url, killAfter: 40_000 }),
        ),
      );
      for (const r of runs) {
        expect(r.code).toBe(4);
        expect(r.stderr).toMatch(ONE_LINE);
        expect(r.stderr).toContain(`cannot reach Redis at ${url}`);
      }
    } finally {
      await proxy.close();
    }
    expect(await redis.cli('DBSIZE')).toBe('0');
  }, 60_000);

  it('names the URL taken from REDIS_URL', async () => {
    const port = await freePort();
    const r = await nsro(['status', 'acme'], {
      redis: null,
      env: { REDIS_URL: `redis://127.0.0.1:${port}` },
    });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toContain(`cannot reach Redis at redis://127.0.0.1:${port}:`);
  });
});

describe('exit codes: one per outcome, listed the same in --help and docs/cli.md', () => {
  it('`wait` on a writable namespace exits 5 (not 4, unreachable), writes nothing, says what to do', async () => {
    const keys = await snapshot();
    const writes = await writeCounters();
    for (const args of [
      ['wait', 'acme'],
      ['wait', 'acme', '--json'],
    ]) {
      const r = await nsro(args);
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 5, stdout: '' });
      expect(r.stderr).toBe(
        "nsro: acme is writable (not in maintenance): no fence to wait for, nothing written; 'nsro enable acme --wait' closes it and waits\n",
      );
    }
    expect(await writesSince(writes)).toEqual(NO_WRITE);
    expect(await snapshot()).toEqual(keys);
    // An explicit `active` is writable too.
    await redis.cli('SET', 'nsro:state:acme', 'active');
    expect((await nsro(['wait', 'acme'])).code).toBe(5);
    expect(await redis.cli('EXISTS', 'nsro:fence:acme')).toBe('0');
  });

  it('an error Redis answers with exits 1, not 4: the server was reached', async () => {
    await redis.cli('HSET', 'nsro:index', 'not', 'a set'); // the stores keep a set there
    const r = await nsro(['enable', 'acme']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toContain('WRONGTYPE');
    expect(r.stderr).not.toContain('cannot reach');
    expect(r.stderr).not.toContain('--help');
  });

  it('--help and docs/cli.md list every code, with the same meaning', () => {
    const codes = Object.values(EXIT).sort();
    expect(codes).toEqual([0, 1, 2, 3, 4, 5]);
    const help = new Map(
      [...USAGE.slice(USAGE.indexOf('Exit codes:')).matchAll(/^ {2}(\d) {2}(.+)$/gm)].map((m) => [
        Number(m[1]),
        m[2] as string,
      ]),
    );
    expect([...help.keys()]).toEqual(codes);
    const doc = readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Exit codes'));
    const rows = new Map(
      [...section.matchAll(/^\| (\d) +\| (.+?) *\|$/gm)].map((m) => [Number(m[1]), m[2] as string]),
    );
    expect([...rows.keys()]).toEqual(codes);
    // The same outcome under each number: the help's short line opens the doc's row.
    for (const code of codes) {
      const short = (help.get(code) ?? '').replace(/ \(.*$/, '');
      expect({ code, doc: rows.get(code)?.startsWith(short) }).toEqual({ code, doc: true });
    }
  });
});

describe('--version', () => {
  const version = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  ).version;

  it('`--version` and `-V` print the package version; with --json, { version }', async () => {
    for (const flag of ['--version', '-V']) {
      expect(await nsro([flag], { redis: null })).toEqual({
        code: 0,
        stdout: `${version}\n`,
        stderr: '',
        exitAfterStderrMs: null,
      });
    }
    const json = await nsro(['--version', '--json'], { redis: null });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ version });
  });

  it('reads the package.json of the package it was installed in, from any working directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nsro-version-'));
    try {
      const pkg = join(dir, 'node_modules', 'namespace-read-only');
      mkdirSync(join(pkg, 'dist'), { recursive: true });
      copyFileSync(BIN, join(pkg, 'dist', 'bin.js'));
      // Another version than the repository's: the one beside the file must be the one read.
      writeFileSync(
        join(pkg, 'package.json'),
        JSON.stringify({ name: 'namespace-read-only', version: '9.8.7-installed', type: 'module' }),
      );
      // Its dependencies, where npm would have put them.
      symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
      const out = execFileSync(process.execPath, [join(pkg, 'dist', 'bin.js'), '-V'], {
        cwd: dir,
        encoding: 'utf8',
      });
      expect(out).toBe('9.8.7-installed\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('token: a bypass token, printed alone, made without Redis', () => {
  const SECRET = 'cli-test-secret-0123456789abcdefghijklmnop';
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nsro-token-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** `nsro token ...` with REDIS_URL naming our server, which it must never contact. */
  async function token(args: string[], env: Record<string, string> = {}) {
    const before = await connections();
    const r = await nsro(['token', ...args], {
      redis: null,
      env: { REDIS_URL: redis.url, ...env },
    });
    expect((await connections()) - before).toBe(connectionStep);
    return r;
  }

  it('`token acme --for 30m` with NSRO_BYPASS_SECRET prints one line: a token for acme, for 30 minutes', async () => {
    const before = Date.now();
    const r = await token(['acme', '--for', '30m'], { NSRO_BYPASS_SECRET: SECRET });
    const after = Date.now();
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^v1\.[A-Za-z0-9_.-]+\n$/);
    const grant = verifyBypassToken(r.stdout.trim(), bypassKeys(SECRET), Date.now());
    expect(grant?.namespace).toBe('acme');
    expect(grant?.expiresAt).toBeGreaterThanOrEqual(before + 1_800_000);
    expect(grant?.expiresAt).toBeLessThanOrEqual(after + 1_800_000);
    expect(verifyBypassToken(r.stdout.trim(), bypassKeys('x'.repeat(32)), Date.now())).toBeNull();
  });

  it("`token Acme/Team` is for acme, `token '*'` for the instance", async () => {
    const env = { NSRO_BYPASS_SECRET: SECRET };
    const team = await token(['Acme/Team', '--for', '1h'], env);
    const star = await token(['*', '--for', '1h'], env);
    const keys = bypassKeys(SECRET);
    expect(verifyBypassToken(team.stdout.trim(), keys, Date.now())?.namespace).toBe('acme');
    expect(verifyBypassToken(star.stdout.trim(), keys, Date.now())?.namespace).toBe('*');
  });

  it('--secret-file: its first line, trimmed, wins over NSRO_BYPASS_SECRET', async () => {
    const file = join(dir, 'secret');
    writeFileSync(file, `  ${SECRET}  \nnot this line\n`, { mode: 0o600 });
    const r = await token(['acme', '--for', '2h', '--secret-file', file], {
      NSRO_BYPASS_SECRET: 'another-secret-0123456789abcdefghijklmnop',
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.split('\n')).toHaveLength(2);
    expect(verifyBypassToken(r.stdout.trim(), bypassKeys(SECRET), Date.now())?.namespace).toBe(
      'acme',
    );
  });

  it.each<[string, string[], Record<string, string>, RegExp]>([
    [
      '--secret <value>',
      ['acme', '--for', '30m', '--secret', 'shh-0123456789abcdefghijklmnopqrstuv'],
      {},
      /--secret is refused: a secret on the command line is visible to other users/,
    ],
    [
      '--secret=<value>',
      ['acme', '--for', '30m', '--secret=shh-0123456789abcdefghijklmnopqrstuv'],
      { NSRO_BYPASS_SECRET: SECRET },
      /--secret is refused/,
    ],
    [
      'no secret',
      ['acme', '--for', '30m'],
      { NSRO_BYPASS_SECRET: '' },
      /token needs a secret: set NSRO_BYPASS_SECRET or use --secret-file <path>/,
    ],
    [
      'a short secret',
      ['acme', '--for', '30m'],
      { NSRO_BYPASS_SECRET: 'shh-short' },
      /the secret in NSRO_BYPASS_SECRET is 9 characters long; it needs at least 32/,
    ],
    [
      'the secret as an argument',
      ['acme', 'shh-0123456789abcdefghijklmnopqrstuv', '--for', '30m'],
      { NSRO_BYPASS_SECRET: SECRET },
      /token takes one namespace and no other argument/,
    ],
    [
      'a missing --secret-file',
      ['acme', '--for', '30m', '--secret-file', '/nonexistent/secret'],
      { NSRO_BYPASS_SECRET: SECRET },
      /cannot read --secret-file "\/nonexistent\/secret" \(ENOENT\)/,
    ],
    ['no --for', ['acme'], { NSRO_BYPASS_SECRET: SECRET }, /token needs --for <duration>/],
    [
      'a bad duration',
      ['acme', '--for', '3x'],
      { NSRO_BYPASS_SECRET: SECRET },
      /bad duration "3x"/,
    ],
    [
      'over a year',
      ['acme', '--for', '366d'],
      { NSRO_BYPASS_SECRET: SECRET },
      /--for 366d is too long for a token/,
    ],
    [
      'a bad namespace',
      ['bad name', '--for', '30m'],
      { NSRO_BYPASS_SECRET: SECRET },
      /invalid namespace name: "bad name"/,
    ],
    ['no namespace', [], { NSRO_BYPASS_SECRET: SECRET }, /token needs a namespace/],
    [
      'an enable option',
      ['acme', '--for', '30m', '--message', 'hi'],
      { NSRO_BYPASS_SECRET: SECRET },
      /--message does not go with token/,
    ],
  ])('%s: exit 2, one line, no token and no secret shown', async (_name, args, env, message) => {
    const r = await token(args, env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('shh');
    expect(r.stderr).not.toContain(SECRET);
  });

  it('a short first line of --secret-file is refused, not shown', async () => {
    const file = join(dir, 'short');
    writeFileSync(file, 'shh-short\n');
    const r = await token(['acme', '--for', '30m', '--secret-file', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(ONE_LINE);
    expect(r.stderr).toContain('is 9 characters long; it needs at least 32');
    expect(r.stderr).not.toContain('shh');
  });

  it('--secret-file goes with token only', async () => {
    const r = await nsro(['status', 'acme', '--secret-file', join(dir, 'secret')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--secret-file only goes with token, not status/);
  });
});

describe('main() in process', () => {
  let stderr: string[];
  beforeEach(() => {
    stderr = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  async function run(argv: string[]): Promise<{ code: number; lines: string[] }> {
    const lines: string[] = [];
    const code = await main(argv, (line: string) => lines.push(line));
    return { code, lines };
  }

  it('--help prints the usage and exits 0; no command prints it and exits 2', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.lines.join('\n')).toMatch(/^Usage: nsro <command>/);
    expect(help.lines.join('\n')).toContain('token <ns> --for <duration> [--secret-file <path>]');
    expect((await run(['-h'])).code).toBe(0);
    expect((await run(['help'])).code).toBe(0);
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.lines.join('\n')).toMatch(/^Usage: nsro <command>/);
    expect(stderr).toEqual([]);
  });

  it('enable / status / list / disable through `out`', async () => {
    const url = ['--redis', redis.url];
    expect(await run(['enable', 'acme', '--message', 'Moving', ...url])).toEqual({
      code: 0,
      lines: ['acme: maintenance "Moving"'],
    });
    expect(await run(['status', 'acme', ...url])).toEqual({
      code: 0,
      lines: ['acme: maintenance "Moving"'],
    });
    expect(await run(['list', ...url])).toEqual({ code: 0, lines: ['acme\tmaintenance'] });
    expect(await run(['disable', 'acme', ...url])).toEqual({ code: 0, lines: ['acme: writable'] });
    expect(await redis.cli('KEYS', '*')).toBe('nsro:audit'); // the trail of both changes
    expect(await run(['log', ...url])).toEqual({
      code: 0,
      lines: [
        expect.stringMatching(/ acme \{"state":"maintenance","message":"Moving"\} -> \(none\) by /),
        expect.stringMatching(/ acme \(none\) -> \{"state":"maintenance","message":"Moving"\} by /),
      ],
    });
    expect(stderr).toEqual([]);
  });

  it('a usage error is one stderr line and exit 2', async () => {
    expect(await run(['enable', 'acme', '--for', '3x', '--redis', redis.url])).toEqual({
      code: 2,
      lines: [],
    });
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(ONE_LINE);
    expect(await redis.cli('DBSIZE')).toBe('0');
  });
});

describe('parseDuration', () => {
  it.each([
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1m500ms', 60_500],
    ['1d2h3m4s', 93_784_000],
  ])('%s -> %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    '3x',
    '0m',
    '0s0ms',
    '-5m',
    'abc',
    '',
    '30',
    'm',
    '1.5h',
    '1H',
    ' 30m',
    '30m ',
    '1h 30m',
    '1234567890s',
  ])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow(/bad duration/);
  });
});

describe('describeState', () => {
  const now = Date.parse('2026-01-01T00:00:00.000Z');
  const at = (ms: number) => new Date(now + ms);

  it.each<[string, NamespaceState | null, string]>([
    ['no state', null, 'acme: writable'],
    ['active', { state: 'active' }, 'acme: active (writable)'],
    ['maintenance', { state: 'maintenance' }, 'acme: maintenance'],
    [
      'message, until and reason',
      {
        state: 'maintenance',
        message: 'Moving',
        until: at(5_400_000),
        reason: 'migration',
      },
      'acme: maintenance "Moving" expected to end 2026-01-01T01:30:00.000Z (1h30m0s left) reason: migration',
    ],
    [
      'a key TTL (expiresAt) wins over until',
      { state: 'maintenance', until: at(3_600_000), expiresAt: at(90_000) },
      'acme: maintenance ends 2026-01-01T00:01:30.000Z (1m30s left)',
    ],
    [
      'seconds round up',
      { state: 'maintenance', expiresAt: at(1_500) },
      'acme: maintenance ends 2026-01-01T00:00:01.500Z (2s left)',
    ],
    [
      'whole hours and days',
      { state: 'maintenance', expiresAt: at(90_061_000) },
      'acme: maintenance ends 2026-01-02T01:01:01.000Z (25h1m1s left)',
    ],
    [
      'an end already past',
      { state: 'maintenance', until: at(-60_000) },
      'acme: maintenance expected to end 2025-12-31T23:59:00.000Z (0s left)',
    ],
    [
      'an unrecognised value',
      { state: 'maintenance', unrecognized: 'maintenace' },
      'acme: maintenance (unrecognised value "maintenace": treated as maintenance)',
    ],
  ])('%s', (_name, state, text) => {
    expect(describeState('acme', state, now)).toBe(text);
  });

  it('names the instance as *', () => {
    expect(describeState('*', { state: 'maintenance', message: 'Upgrading' }, now)).toBe(
      '*: maintenance "Upgrading"',
    );
  });
});

describe('psTable', () => {
  const base = {
    host: 'web-1',
    startedAt: '2026-01-01T00:00:00.000Z',
    announcedAt: '2026-01-01T00:00:10.000Z',
    ttl: 3000,
  };

  it('one row per process: mode, cause, ages, states, writes in flight; a note for n/a', () => {
    expect(
      psTable([
        {
          ...base,
          id: 'web-1:10:a',
          pid: 10,
          mode: 'complete',
          cause: null,
          knowledgeAge: 420,
          states: 3,
          inflight: { acme: 2, beta: 1, '*': 4 },
          announcedAgo: 310,
        },
        {
          ...base,
          id: 'web-1:11:b',
          pid: 11,
          mode: 'degraded',
          cause: 'push-silent',
          knowledgeAge: 75_000,
          states: null,
          inflight: null,
          announcedAgo: null,
        },
        {
          ...base,
          id: 'web-1:12:c',
          pid: 12,
          mode: 'degraded',
          cause: 'not-configured',
          knowledgeAge: null,
          states: null,
          inflight: { '*': 0 },
          announcedAgo: 12_000,
        },
      ]),
    ).toEqual([
      'PROCESS     MODE      CAUSE           KNOWLEDGE AGE  STATES  IN FLIGHT           ANNOUNCED',
      'web-1:10:a  complete  -               0.4s           3       4 (acme 2, beta 1)  0.3s ago',
      'web-1:11:b  degraded  push-silent     1m15s          -       n/a (no fence)      -',
      'web-1:12:c  degraded  not-configured  -              -       0                   12s ago',
      'n/a (no fence): writes in flight are not tracked without fence: true',
    ]);
  });

  it('says so when no process announces itself', () => {
    expect(psTable([])).toEqual([
      'no live guarding process announces itself (a process appears once its store has started)',
    ]);
  });
});
