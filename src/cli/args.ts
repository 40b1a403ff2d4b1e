import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { DEFAULT_WAIT_TIMEOUT } from '../fence/wait.js';
import { namespaceKey } from '../request/namespace-name.js';

/**
 * The command line, read and checked completely before anything connects: a typo writes
 * nothing and exits 2.
 */

export const EXIT = { ok: 0, unreachable: 1, usage: 2, waitTimedOut: 3 } as const;

export const USAGE = `Usage: nsro <command> [options]

Commands:
  enable <ns> [--for 30m | --until <ISO date>] [--message <text>] [--reason <text>]
              [--wait [--timeout 60s]]
                       with --wait, return only once every live process obeys and
                       its writes in flight to <ns> have finished (the migration fence)
  wait <ns> [--timeout 60s]
                       the same wait, for a namespace already in maintenance
  disable <ns> [--reason <text>]
  status [<ns>]        state, message and time left (all namespaces without <ns>)
  list                 every namespace with a state
  log [<ns>] [--limit 20]
                       the audit trail, newest first: every change made with nsro
                       or a store (all namespaces without <ns>)
  Use '*' as <ns> for the whole instance.

Options:
  --actor <name>       who makes the change, for the audit trail (enable, disable;
                       default: <os user>@<hostname> (nsro))
  --redis <url>        Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379)
  --prefix <prefix>    key prefix (default: nsro:)
  -h, --help

Exit codes: 0 done, 1 Redis unreachable or refused, 2 bad input (nothing written),
3 the wait timed out (the namespace stays in maintenance).`;

export interface Values {
  readonly for?: string | undefined;
  readonly until?: string | undefined;
  readonly message?: string | undefined;
  readonly reason?: string | undefined;
  readonly wait?: boolean | undefined;
  readonly timeout?: string | undefined;
  readonly actor?: string | undefined;
  readonly limit?: string | undefined;
  readonly redis?: string | undefined;
  readonly prefix?: string | undefined;
  readonly help?: boolean | undefined;
}

export interface Parsed {
  readonly command: string;
  readonly namespace: string | undefined;
  readonly values: Values;
}

export function parse(argv: string[]): Parsed {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        for: { type: 'string' },
        until: { type: 'string' },
        message: { type: 'string' },
        reason: { type: 'string' },
        wait: { type: 'boolean' },
        timeout: { type: 'string' },
        actor: { type: 'string' },
        limit: { type: 'string' },
        redis: { type: 'string' },
        prefix: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const [command = '', namespace, ...extra] = parsed.positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`);
  return { command, namespace, values: parsed.values as Values };
}

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `90s`, `30m`, `2h`, `1d`, `1h30m` -> milliseconds. */
export function parseDuration(text: string): number {
  const parts = text.match(/^(?:\d{1,9}(?:ms|s|m|h|d))+$/)
    ? text.match(/\d+(?:ms|s|m|h|d)/g)
    : null;
  if (parts === null)
    throw new UsageError(`bad duration "${text}" (use e.g. 90s, 30m, 2h, 1d, 1h30m)`);
  let total = 0;
  for (const part of parts) {
    const unit = part.replace(/^\d+/, '');
    total += Number.parseInt(part, 10) * (UNITS[unit] ?? 0);
  }
  if (total <= 0) throw new UsageError(`bad duration "${text}" (must be more than zero)`);
  return total;
}

export function checkedNamespace(namespace: string | undefined, command: string): string {
  if (namespace === undefined)
    throw new UsageError(`${command} needs a namespace (or '*' for the instance)`);
  try {
    return namespaceKey(namespace);
  } catch {
    throw new UsageError(`invalid namespace name: ${JSON.stringify(namespace)}`);
  }
}

/** When the maintenance `enable` writes ends by itself: after `ttl` ms, at `until`, or never. */
export function enableEnd(values: Values, now: number): { ttl?: number; until?: Date } {
  if (values.for !== undefined && values.until !== undefined) {
    throw new UsageError('use either --for or --until, not both');
  }
  if (values.for !== undefined) {
    const ttl = parseDuration(values.for);
    if (!Number.isFinite(new Date(now + ttl).getTime()))
      throw new UsageError(`--for ${values.for} is too long`);
    return { ttl };
  }
  if (values.until !== undefined) {
    const until = new Date(values.until);
    if (!/^\d{4}-\d{2}-\d{2}/.test(values.until) || !Number.isFinite(until.getTime())) {
      throw new UsageError(
        `bad --until "${values.until}" (use an ISO date such as 2026-12-01T10:00:00Z)`,
      );
    }
    if (until.getTime() <= now) throw new UsageError(`--until ${values.until} is in the past`);
    return { until };
  }
  return {};
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';

/**
 * The Redis URL to use: `--redis`, else `$REDIS_URL` when set and not empty, else the local
 * default. Checked before connecting: a URL that is not `redis://` or `rediss://` (or a socket
 * path), or names a database that is not a number, is bad input (exit 2), not an unreachable
 * server.
 */
export function redisUrl(flag: string | undefined, env: string | undefined): string {
  const url = flag ?? (env === undefined || env === '' ? DEFAULT_URL : env);
  if (url.startsWith('/')) return url; // a Unix socket path, which ioredis takes as it is
  const where =
    flag !== undefined ? '--redis' : env !== undefined && env !== '' ? 'REDIS_URL' : null;
  let parsed: URL | null = null;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (parsed === null || (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:')) {
    throw new UsageError(
      `bad ${where ?? 'Redis URL'} ${JSON.stringify(redactUrl(url))} (use redis://host:port or rediss://…)`,
    );
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) {
    throw new UsageError(`bad database "${db}" in ${where ?? 'the Redis URL'} (a number, e.g. /0)`);
  }
  return url;
}

/** A URL with its credentials hidden, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/** The commands each command-specific option goes with. */
const OPTION_COMMANDS = {
  for: ['enable'],
  until: ['enable'],
  message: ['enable'],
  reason: ['enable', 'disable'],
  wait: ['enable'],
  actor: ['enable', 'disable'],
  limit: ['log'],
} as const satisfies Partial<Record<keyof Values, readonly string[]>>;

/** Refuses the options `command` does not take (`--timeout` is checked by `waitTimeout`). */
export function rejectOptions(values: Values, command: string): void {
  for (const [name, commands] of Object.entries(OPTION_COMMANDS)) {
    if (
      values[name as keyof Values] !== undefined &&
      !(commands as readonly string[]).includes(command)
    )
      throw new UsageError(`--${name} only goes with ${commands.join(' or ')}, not ${command}`);
  }
  if (values.timeout !== undefined && command !== 'wait' && command !== 'enable') {
    throw new UsageError(`--timeout only goes with enable --wait or wait, not ${command}`);
  }
}

/** `--actor`, else `<os user>@<hostname> (nsro)`. */
export function actorOf(values: Values, user: () => string, host: string): string {
  if (values.actor !== undefined) {
    if (values.actor.trim() === '') throw new UsageError('--actor needs a name');
    return values.actor;
  }
  return `${user()}@${host} (nsro)`;
}

/** `--limit` for `log`: how many entries, default 20. */
export function logLimit(values: Values): number {
  if (values.limit === undefined) return 20;
  if (!/^\d{1,6}$/.test(values.limit) || Number(values.limit) < 1) {
    throw new UsageError(`bad --limit "${values.limit}" (a whole number from 1 to 999999)`);
  }
  return Number(values.limit);
}

/** The wait's timeout in ms, or `null` when there is no wait. */
export function waitTimeout(values: Values, waiting: boolean): number | null {
  if (!waiting) {
    if (values.timeout !== undefined) throw new UsageError('--timeout needs --wait');
    return null;
  }
  return values.timeout === undefined ? DEFAULT_WAIT_TIMEOUT : parseDuration(values.timeout);
}
