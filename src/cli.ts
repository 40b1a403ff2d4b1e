import { parseArgs } from 'node:util';
import type { Redis as RedisClient } from 'ioredis';
import { FenceTimeoutError } from './fence.js';
import { namespaceKey } from './namespace-name.js';
import type { NamespaceState } from './state.js';
import { RedisStateStore } from './stores/redis.js';

/**
 * The operator's CLI: `namespace-read-only` (alias `nsro`). Validates everything before it
 * connects, so a typo writes nothing; one line per error, non-zero exit codes (2 for bad
 * input, 1 when Redis cannot be reached or refuses).
 */

const USAGE = `Usage: nsro <command> [options]

Commands:
  enable <ns> [--for 30m | --until <ISO date>] [--message <text>] [--reason <text>]
              [--wait [--timeout 60s]]
                       with --wait, return only once every live process obeys and
                       its writes in flight to <ns> have finished (the migration fence)
  wait <ns> [--timeout 60s]
                       the same wait, for a namespace already in maintenance
  disable <ns>
  status [<ns>]        state, message and time left (all namespaces without <ns>)
  list                 every namespace with a state
  Use '*' as <ns> for the whole instance.

Options:
  --redis <url>        Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379)
  --prefix <prefix>    key prefix (default: nsro:)
  -h, --help

Exit codes: 0 done, 1 Redis unreachable or refused, 2 bad input (nothing written),
3 the wait timed out (the namespace stays in maintenance).`;

class UsageError extends Error {}

interface Parsed {
  command: string;
  namespace: string | undefined;
  values: {
    for?: string | undefined;
    until?: string | undefined;
    message?: string | undefined;
    reason?: string | undefined;
    wait?: boolean | undefined;
    timeout?: string | undefined;
    redis?: string | undefined;
    prefix?: string | undefined;
    help?: boolean | undefined;
  };
}

function parse(argv: string[]): Parsed {
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
  return { command, namespace, values: parsed.values as Parsed['values'] };
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

function checkedNamespace(namespace: string | undefined, command: string): string {
  if (namespace === undefined)
    throw new UsageError(`${command} needs a namespace (or '*' for the instance)`);
  try {
    return namespaceKey(namespace);
  } catch {
    throw new UsageError(`invalid namespace name: ${JSON.stringify(namespace)}`);
  }
}

/** What `enable` will write, decided before connecting. */
function enablePlan(values: Parsed['values'], now: number) {
  if (values.for !== undefined && values.until !== undefined) {
    throw new UsageError('use either --for or --until, not both');
  }
  let ttl: number | undefined;
  if (values.for !== undefined) {
    ttl = parseDuration(values.for);
    if (!Number.isFinite(new Date(now + ttl).getTime()))
      throw new UsageError(`--for ${values.for} is too long`);
  }
  if (values.until !== undefined) {
    const until = new Date(values.until);
    if (!/^\d{4}-\d{2}-\d{2}/.test(values.until) || !Number.isFinite(until.getTime())) {
      throw new UsageError(
        `bad --until "${values.until}" (use an ISO date such as 2026-12-01T10:00:00Z)`,
      );
    }
    ttl = until.getTime() - now;
    if (ttl <= 0) throw new UsageError(`--until ${values.until} is in the past`);
  }
  return {
    state: {
      state: 'maintenance' as const,
      ...(values.message !== undefined && { message: values.message }),
      ...(values.reason !== undefined && { reason: values.reason }),
      ...(ttl !== undefined && { until: new Date(now + ttl) }),
    },
    ttl,
  };
}

export function describeState(
  namespace: string,
  state: NamespaceState | null,
  now = Date.now(),
): string {
  if (state === null) return `${namespace}: writable`;
  const parts = [`${namespace}: ${state.state === 'active' ? 'active (writable)' : 'maintenance'}`];
  if (state.unrecognized !== undefined)
    parts.push(
      `(unrecognised value ${JSON.stringify(state.unrecognized)}: treated as maintenance)`,
    );
  if (state.message !== undefined) parts.push(`"${state.message}"`);
  const end = state.expiresAt ?? state.until;
  if (end !== undefined) {
    const left = end.getTime() - now;
    parts.push(
      `${state.expiresAt !== undefined ? 'ends' : 'expected to end'} ${end.toISOString()} (${formatDuration(left)} left)`,
    );
  }
  if (state.reason !== undefined) parts.push(`reason: ${state.reason}`);
  return parts.join(' ');
}

function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return [h > 0 ? `${h}h` : '', m > 0 ? `${m}m` : '', `${s % 60}s`].filter(Boolean).join('');
}

async function connect(url: string): Promise<RedisClient> {
  let Redis: typeof import('ioredis').Redis;
  try {
    ({ Redis } = await import('ioredis'));
  } catch {
    throw new Error('the CLI needs ioredis: npm install ioredis');
  }
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    // A server that accepts and never answers must not hang the CLI.
    commandTimeout: 3000,
    // disconnect() on an already-closed socket keeps a timer of this length alive (ioredis).
    disconnectTimeout: 100,
    retryStrategy: () => null,
  });
  let cause: Error | undefined;
  redis.on('error', (error: Error) => {
    cause ??= error; // reported once, below
  });
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    const reason = (cause ?? (error as Error)).message;
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${reason}`);
  }
  return redis;
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}

export async function main(argv: string[], out = console.log): Promise<number> {
  let redis: RedisClient | undefined;
  try {
    const { command, namespace, values } = parse(argv);
    if (values.help === true || command === '' || command === 'help') {
      out(USAGE);
      return command === '' && values.help !== true ? 2 : 0;
    }
    const now = Date.now();
    // Everything is validated before connecting: bad input writes nothing.
    let run: (store: RedisStateStore) => Promise<void>;
    switch (command) {
      case 'enable': {
        const ns = checkedNamespace(namespace, command);
        const plan = enablePlan(values, now);
        const wait = waitPlan(values, values.wait === true);
        run = async (store) => {
          await store.set(ns, plan.state, plan.ttl === undefined ? {} : { ttl: plan.ttl });
          out(describeState(ns, await store.get(ns)));
          if (wait !== null) await fence(store, ns, wait, out);
        };
        break;
      }
      case 'wait': {
        const ns = checkedNamespace(namespace, command);
        rejectOptions(values, command);
        const wait = waitPlan(values, true) ?? 60_000;
        run = (store) => fence(store, ns, wait, out);
        break;
      }
      case 'disable': {
        const ns = checkedNamespace(namespace, command);
        rejectOptions(values, command);
        run = async (store) => {
          await store.delete(ns);
          out(`${ns}: writable`);
        };
        break;
      }
      case 'status': {
        rejectOptions(values, command);
        if (namespace !== undefined) {
          const ns = checkedNamespace(namespace, command);
          run = async (store) => out(describeState(ns, await store.get(ns)));
        } else {
          run = async (store) => {
            const all = await store.list();
            if (all.length === 0) out('no namespace has a state: everything is writable');
            for (const { namespace: ns, state } of all) out(describeState(ns, state));
          };
        }
        break;
      }
      case 'list': {
        rejectOptions(values, command);
        if (namespace !== undefined) throw new UsageError('list takes no namespace');
        run = async (store) => {
          for (const { namespace: ns, state } of await store.list()) out(`${ns}\t${state.state}`);
        };
        break;
      }
      default:
        throw new UsageError(`unknown command "${command}" (enable, wait, disable, status, list)`);
    }
    const url = values.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    redis = await connect(url);
    const store = new RedisStateStore({
      redis,
      prefix: values.prefix ?? 'nsro:',
      subscribe: false,
      timeout: 3000,
    });
    await run(store);
    await store.close();
    return 0;
  } catch (error) {
    const usage = error instanceof UsageError;
    // One line, whatever the message (node's parseArgs errors span several), and one prefix.
    const message = (error as Error).message
      .replace(/\s*\n\s*/g, ' ')
      .replace(/^namespace-read-only: /, '');
    process.stderr.write(`nsro: ${message}${usage ? " (see 'nsro --help')" : ''}\n`);
    if (error instanceof FenceTimeoutError) return 3;
    return usage ? 2 : 1;
  } finally {
    redis?.disconnect();
  }
}

function rejectOptions(values: Parsed['values'], command: string): void {
  for (const name of ['for', 'until', 'message', 'reason', 'wait'] as const) {
    if (values[name] !== undefined)
      throw new UsageError(`--${name} only goes with enable, not ${command}`);
  }
  if (values.timeout !== undefined && command !== 'wait') {
    throw new UsageError(`--timeout only goes with enable --wait or wait, not ${command}`);
  }
}

/** The wait's timeout in ms, or `null` when there is no wait. */
function waitPlan(values: Parsed['values'], waiting: boolean): number | null {
  if (!waiting) {
    if (values.timeout !== undefined) throw new UsageError('--timeout needs --wait');
    return null;
  }
  return values.timeout === undefined ? 60_000 : parseDuration(values.timeout);
}

async function fence(
  store: RedisStateStore,
  ns: string,
  timeout: number,
  out: (line: string) => void,
) {
  const result = await store.wait(ns, { timeout });
  out(
    `${ns}: fenced: ${result.processes.length} live process(es) acknowledged in ${result.ms} ms; no admitted write to ${ns} is still running`,
  );
}
