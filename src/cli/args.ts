import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MAX_TTL, MIN_SECRET_LENGTH } from '../bypass/token.js';
import { UsageError } from '../errors.js';
import { DEFAULT_WAIT_TIMEOUT } from '../fence/wait.js';
import { namespaceKey } from '../request/namespace-name.js';
import { isReservedTopLevel } from '../routing/gitlab-routes.js';

/**
 * The command line, read and checked completely before anything connects: a typo writes
 * nothing and exits 2.
 */

/**
 * One code per outcome a script may branch on. 3 kept its meaning from before codes 4 and 5
 * existed, so a script that retries a timed-out wait still works.
 */
export const EXIT = {
  ok: 0,
  /** Anything else: Redis answered with an error, the connection broke mid-command, a bug. */
  failed: 1,
  usage: 2,
  waitTimedOut: 3,
  unreachable: 4,
  /** `wait` on a namespace that is writable: no fence to wait for, and nothing was written. */
  notInMaintenance: 5,
} as const;

export const USAGE = `Usage: nsro <command> [options]

Commands:
  enable <ns> [--for 30m | --until <ISO date>] [--at <ISO date>] [--message <text>]
              [--reason <text>] [--state maintenance|frozen|report] [--wait [--timeout 60s]]
                       --at schedules the window: writes pass until then, and --for
                       counts from it; --state frozen refuses reads too, report
                       refuses nothing and logs what maintenance would refuse
                       with --wait, return only once every live process obeys and
                       its writes in flight to <ns> have finished (the migration fence)
  wait <ns> [--timeout 60s]
                       the same wait, for a namespace already in maintenance
  disable <ns> [--reason <text>]
  status <ns>          state, message and time left, on one line
  status               a table of every namespace with a state: state, reason,
                       since, until, remaining, starts
  list                 every namespace with a state
  ps                   the live guarding processes (those that announce themselves):
                       mode, knowledge age, states held, writes in flight (tracked
                       only by guards with fence: true), last announced
  token <ns> --for <duration> [--secret-file <path>]
                       print a bypass token that lets requests write to <ns> while it
                       is in maintenance; the secret comes from $NSRO_BYPASS_SECRET or
                       the first line of --secret-file, never from an argument.
                       Needs no Redis.
  log [<ns>] [--limit 20]
                       the audit trail, newest first: every change made with nsro
                       or a store (all namespaces without <ns>)
  Use '*' as <ns> for the whole instance. A reserved top-level word (groups, api,
  admin, help...) is no namespace: every command but disable refuses it.

Options:
  --json               print one JSON document instead (every command; errors stay
                       one line on stderr)
  --actor <name>       who makes the change, for the audit trail (enable, disable;
                       default: <os user>@<hostname> (nsro))
  --redis <url>        redis://[user:password@]host[:port][/db], rediss://... or a
                       Unix socket path (default: $REDIS_URL, which must not be set
                       empty, else redis://127.0.0.1:6379); a database the server
                       does not have is bad input
  --prefix <prefix>    key prefix (default: nsro:)
  -V, --version        print the version
  -h, --help

Exit codes:
  0  done
  1  another failure (Redis answered with an error, the connection broke mid-command)
  2  bad input: nothing was written
  3  the wait timed out (the namespace stays in maintenance)
  4  Redis unreachable (or ioredis not installed)
  5  wait: the namespace is not in maintenance (writable: nothing to wait for, nothing
     written)`;

export interface Values {
  readonly for?: string | undefined;
  readonly until?: string | undefined;
  readonly at?: string | undefined;
  readonly state?: string | undefined;
  readonly message?: string | undefined;
  readonly reason?: string | undefined;
  readonly wait?: boolean | undefined;
  readonly timeout?: string | undefined;
  readonly actor?: string | undefined;
  readonly limit?: string | undefined;
  readonly redis?: string | undefined;
  readonly prefix?: string | undefined;
  readonly 'secret-file'?: string | undefined;
  readonly json?: boolean | undefined;
  readonly help?: boolean | undefined;
  readonly version?: boolean | undefined;
}

export interface Parsed {
  readonly command: string;
  readonly namespace: string | undefined;
  readonly values: Values;
}

export function parse(argv: string[]): Parsed {
  refuseSecretArgument(argv);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        for: { type: 'string' },
        until: { type: 'string' },
        at: { type: 'string' },
        state: { type: 'string' },
        message: { type: 'string' },
        reason: { type: 'string' },
        wait: { type: 'boolean' },
        timeout: { type: 'string' },
        actor: { type: 'string' },
        limit: { type: 'string' },
        redis: { type: 'string' },
        prefix: { type: 'string' },
        'secret-file': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
  } catch (error) {
    throw new UsageError(parserMessage(error));
  }
  const [command = '', namespace, ...extra] = parsed.positionals;
  if (extra.length > 0) {
    // Not echoed for `token`: a stray argument there may well be the secret.
    throw new UsageError(
      command === 'token'
        ? 'token takes one namespace and no other argument (the secret comes from $NSRO_BYPASS_SECRET or --secret-file)'
        : `unexpected argument: ${extra[0]}`,
    );
  }
  return { command, namespace, values: parsed.values as Values };
}

/**
 * node's parseArgs errors in the CLI's words: its own span sentences and quote the option with a
 * quote left unbalanced (`as in '-- "--foo"`), and they name JavaScript, not the command line.
 */
function parserMessage(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : String(error);
  const option = /'(-{1,2}[^' ]*)/.exec(text)?.[1] ?? 'an option';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(text)) return `${option} takes no value`;
      if (/ambiguous/.test(text)) {
        return `${option} needs a value (one starting with '-' goes as ${option}=<value>)`;
      }
      return `${option} needs a value`;
    default:
      // Not expected from the options above; its first line at least, and no stack.
      return text.split('\n')[0] ?? 'bad command line';
  }
}

/**
 * The package's version, from the package.json above this file: the built `dist/bin.js` sits
 * one level below it (in the repository and in an installed package alike), the source two.
 */
export function packageVersion(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'namespace-read-only' && typeof pkg.version === 'string') {
        return pkg.version;
      }
    } catch {
      // no (readable) package.json here: look further up
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the package.json of namespace-read-only');
    dir = parent;
  }
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

/**
 * The key of the namespace a command names. A reserved top-level word (`groups`, `api`...) is
 * refused: no namespace has that name, so a state there would close nothing an operator meant
 * while looking as if it did (`enable groups` for `enable groups/acme`, a typo). `disable` still
 * takes one, to remove a state set by other means (redis-cli, code).
 */
export function checkedNamespace(namespace: string | undefined, command: string): string {
  if (namespace === undefined)
    throw new UsageError(`${command} needs a namespace (or '*' for the instance)`);
  let key: string;
  try {
    key = namespaceKey(namespace);
  } catch {
    throw new UsageError(`invalid namespace name: ${JSON.stringify(namespace)}`);
  }
  if (command !== 'disable' && isReservedTopLevel(key)) {
    // `groups/acme` is how GitLab addresses the group acme: say which name to use instead.
    const group = key === 'groups' ? groupOf(namespace.slice(key.length + 1)) : null;
    const hint = group === null ? '' : `; for the group at /groups/${group}, name ${group}`;
    throw new UsageError(
      `"${key}" is a reserved top-level word, not a namespace (GitLab allows no namespace by that name)${hint}`,
    );
  }
  return key;
}

/** The root namespace of `path` when it names one (`acme/team` -> `acme`), else `null`. */
function groupOf(path: string): string | null {
  try {
    return path === '' ? null : namespaceKey(path);
  } catch {
    return null;
  }
}

/** `--at`: when a scheduled window starts. */
export function enableStart(values: Values, now: number): { startsAt?: Date } {
  if (values.at === undefined) return {};
  const startsAt = isoDate(values.at, '--at');
  if (startsAt.getTime() <= now) throw new UsageError(`--at ${values.at} is in the past`);
  if (
    values.until !== undefined &&
    isoDate(values.until, '--until').getTime() <= startsAt.getTime()
  ) {
    throw new UsageError('--until must come after --at');
  }
  return { startsAt };
}

/** `--state`: what `enable` sets. */
export function enableState(values: Values): { state?: 'maintenance' | 'frozen' | 'report' } {
  const state = values.state;
  if (state === undefined) return {};
  if (state !== 'maintenance' && state !== 'frozen' && state !== 'report') {
    throw new UsageError(`bad --state "${state}" (maintenance, frozen or report)`);
  }
  return { state };
}

function isoDate(text: string, flag: string): Date {
  const date = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || !Number.isFinite(date.getTime())) {
    throw new UsageError(`bad ${flag} "${text}" (use an ISO date such as 2026-12-01T10:00:00Z)`);
  }
  return date;
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

/** Where the CLI connects: the URL without its database, and the database to SELECT. */
export interface RedisTarget {
  /** What ioredis is given: the URL as typed but for its database path, or a socket path. */
  readonly url: string;
  /** The database index; 0 when the URL names none. */
  readonly db: number;
}

/**
 * The Redis URL to use: `--redis`, else `$REDIS_URL`, else the local default. Checked before
 * connecting: a URL that is not `redis://` or `rediss://` (or a socket path), names a database
 * that is not a whole number, or an empty `$REDIS_URL` (most often a variable that a deployment
 * forgot to fill in, which must not quietly mean the local Redis) is bad input (exit 2), not an
 * unreachable server. Whether the server has that database is only known once connected.
 */
export function redisUrl(flag: string | undefined, env: string | undefined): string {
  return redisTarget(flag, env).display;
}

export function redisTarget(
  flag: string | undefined,
  env: string | undefined,
): RedisTarget & { readonly display: string } {
  if (flag === undefined && env === '') {
    throw new UsageError(
      'REDIS_URL is set but empty: set it to a redis:// URL, unset it for redis://127.0.0.1:6379, or use --redis',
    );
  }
  const url = flag ?? env ?? DEFAULT_URL;
  if (url.startsWith('/')) return { url, db: 0, display: url }; // a Unix socket path, as ioredis takes it
  const where = flag !== undefined ? '--redis' : env !== undefined ? 'REDIS_URL' : 'Redis URL';
  let parsed: URL | null = null;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (parsed === null || (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:')) {
    throw new UsageError(
      `bad ${where} ${JSON.stringify(redactUrl(url))} (use redis://host:port or rediss://…)`,
    );
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^(?:0|[1-9]\d{0,4})$/.test(db)) {
    throw new UsageError(
      `bad database "${db}" in ${where === 'Redis URL' ? 'the Redis URL' : where} (a whole number, e.g. /0)`,
    );
  }
  // ioredis takes the database from the URL before any option, and a SELECT that fails while
  // it connects only emits an error and goes on in database 0: the CLI selects it itself.
  parsed.pathname = '';
  return { url: parsed.href, db: db === '' ? 0 : Number(db), display: url };
}

/** A URL with its credentials hidden, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

/** The commands each command-specific option goes with. */
const OPTION_COMMANDS = {
  for: ['enable', 'token'],
  until: ['enable'],
  at: ['enable'],
  state: ['enable'],
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

/**
 * A secret on the command line is readable by every local user (`ps`, `/proc`) and stays in
 * shell history, so `--secret` is refused with that explanation rather than as an unknown option.
 */
function refuseSecretArgument(argv: readonly string[]): void {
  for (const arg of argv) {
    if (arg === '--') return;
    if (arg === '--secret' || arg.startsWith('--secret=')) {
      throw new UsageError(
        '--secret is refused: a secret on the command line is visible to other users (ps) and kept in shell history; set NSRO_BYPASS_SECRET or use --secret-file <path>',
      );
    }
  }
}

/** The environment variable that holds the secret `token` signs with. */
export const SECRET_ENV = 'NSRO_BYPASS_SECRET';

/** Bytes of a `--secret-file` read: its first line is all that counts. */
const SECRET_FILE_BYTES = 4096;

/**
 * The secret `token` signs with: the first line of `--secret-file` (trimmed), else
 * `$NSRO_BYPASS_SECRET` as it is (an empty one counts as unset). No message shows it.
 */
export function bypassSecret(file: string | undefined, env: string | undefined): string {
  let secret: string;
  let source: string;
  if (file !== undefined) {
    source = `the first line of --secret-file ${JSON.stringify(file)}`;
    secret = firstLine(file);
  } else if (env !== undefined && env !== '') {
    source = SECRET_ENV;
    secret = env;
  } else {
    throw new UsageError(
      `token needs a secret: set ${SECRET_ENV} or use --secret-file <path> (never an argument)`,
    );
  }
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new UsageError(
      `the secret in ${source} is ${secret.length === 0 ? 'empty' : `${secret.length} characters long`}; it needs at least ${MIN_SECRET_LENGTH} (e.g. from \`openssl rand -base64 32\`)`,
    );
  }
  return secret;
}

/** The first line of a file, trimmed, reading no more than its first few kilobytes. */
function firstLine(path: string): string {
  const buffer = Buffer.alloc(SECRET_FILE_BYTES);
  let length: number;
  try {
    const fd = openSync(path, 'r');
    try {
      length = readSync(fd, buffer, 0, buffer.length, null);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new UsageError(`cannot read --secret-file ${JSON.stringify(path)} (${code})`);
  }
  const text = buffer.toString('utf8', 0, length);
  const end = text.search(/\r?\n/);
  if (end === -1 && length === buffer.length) {
    throw new UsageError(
      `the first line of --secret-file ${JSON.stringify(path)} is longer than ${SECRET_FILE_BYTES} bytes`,
    );
  }
  return (end === -1 ? text : text.slice(0, end)).trim();
}

/** How long a token lasts: `--for`, required, at most a year. */
export function tokenTtl(values: Values): number {
  for (const name of [
    'until',
    'message',
    'reason',
    'wait',
    'timeout',
    'redis',
    'prefix',
  ] as const) {
    if (values[name] !== undefined) {
      throw new UsageError(`--${name} does not go with token (it takes --for and --secret-file)`);
    }
  }
  if (values.for === undefined) {
    throw new UsageError('token needs --for <duration> (a token always expires), e.g. --for 2h');
  }
  const ttl = parseDuration(values.for);
  if (ttl > MAX_TTL)
    throw new UsageError(`--for ${values.for} is too long for a token (at most 365d)`);
  return ttl;
}
