import { OptionsError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { loggerOption, oneOf, optionsObject, wholeNumber } from '../../options.js';
import type { RedisClient, RedisClientLike } from './client.js';
import { DEFAULT_PREFIX } from './keys.js';

/** `RedisStateStore`'s options, validated once like the guard's. */

export interface RedisStateStoreOptions {
  /** An ioredis `Redis` or `Cluster`. It stays yours: the store never closes it. */
  readonly redis: RedisClientLike;
  /** Key prefix. Default `'nsro:'`. */
  readonly prefix?: string;
  /**
   * In the degraded mode (knowledge not complete), how long a state read per key is trusted
   * (ms): the staleness bound of that mode. Default 1000.
   */
  readonly ttl?: number;
  /**
   * How often this process writes its canary key, whose keyspace notification proves the push
   * path delivers (ms). A canary unanswered for this long switches to the degraded mode, so a
   * silent push path is detected within twice this. Default 1000.
   */
  readonly canaryInterval?: number;
  /** How often the complete copy is re-read from Redis as a check on push (ms). Default 60000. */
  readonly resyncInterval?: number;
  /**
   * When Redis fails, keep deciding from the last complete knowledge (every namespace) or the
   * last value read per key, up to this old (ms). Default 30000; 0 disables.
   */
  readonly staleIfError?: number;
  /** Time budget of one Redis read (ms). Default 100. */
  readonly timeout?: number;
  /** Most namespaces cached. Default 100000. */
  readonly max?: number;
  /**
   * Listen for changes: `true` (default) subscribes on a dedicated connection; `false` relies on
   * `ttl` alone (the CLI uses this).
   */
  readonly subscribe?: boolean;
  /**
   * Keyspace notifications, which carry plain `redis-cli SET`/`DEL`/expiry to every process
   * and make the store's knowledge complete: `'enable'` (default) turns them on with `CONFIG
   * SET` where permitted (again after every reconnect, e.g. to a promoted replica); `'auto'` uses
   * them only when the server already has them on; `'off'` ignores them (degraded mode). Not
   * available on a Cluster.
   */
  readonly keyspaceEvents?: 'auto' | 'enable' | 'off';
  /**
   * How long a guarding process counts as alive for the migration fence after its last
   * heartbeat (ms). Default 5000. A process that cannot renew it in time refuses writes.
   */
  readonly heartbeatTtl?: number;
  /**
   * Entries kept in the audit stream `<prefix>audit`, approximately (`XADD ... MAXLEN ~`: Redis
   * trims whole nodes of up to 100 entries, so a few more may remain). Default 10000; 0 writes no
   * audit entries.
   */
  readonly auditMax?: number;
  /**
   * Announce this process under `<prefix>ps:<id>` once the store has started, so that `nsro ps`
   * lists it (mode, knowledge age, states, writes in flight). Default `true`; `false` for a store
   * that does not guard (the CLI's, a script's).
   */
  readonly announce?: boolean;
  /**
   * A pino-compatible logger for the store's own events (unrecognised values, the degraded
   * mode, failed reads). Default: a pino logger at `warn` on stderr. `false` silences the store.
   * Its throws are swallowed.
   */
  readonly logger?: Logger | false;
}

export interface RedisStoreConfig {
  readonly redis: RedisClient;
  readonly prefix: string;
  readonly ttl: number;
  readonly canaryInterval: number;
  readonly resyncInterval: number;
  readonly staleIfError: number;
  readonly timeout: number;
  readonly max: number;
  readonly subscribe: boolean;
  readonly keyspaceEvents: 'auto' | 'enable' | 'off';
  readonly heartbeatTtl: number;
  readonly auditMax: number;
  readonly announce: boolean;
  readonly logger: Logger;
}

/** Every option name, checked by the compiler against the options type. */
const OPTION_NAMES: Record<keyof RedisStateStoreOptions, true> = {
  redis: true,
  prefix: true,
  ttl: true,
  canaryInterval: true,
  resyncInterval: true,
  staleIfError: true,
  timeout: true,
  max: true,
  subscribe: true,
  keyspaceEvents: true,
  heartbeatTtl: true,
  auditMax: true,
  announce: true,
  logger: true,
};

const OWNER = 'RedisStateStore option';

export function resolveRedisOptions(options: unknown): RedisStoreConfig {
  const o = optionsObject(options, OPTION_NAMES, OWNER);
  return {
    redis: redisOption(o.redis),
    prefix: prefixOption(o.prefix),
    ttl: wholeNumber(o.ttl, 'ttl', 1000, 1, OWNER),
    canaryInterval: wholeNumber(o.canaryInterval, 'canaryInterval', 1000, 10, OWNER),
    resyncInterval: wholeNumber(o.resyncInterval, 'resyncInterval', 60_000, 100, OWNER),
    staleIfError: wholeNumber(o.staleIfError, 'staleIfError', 30_000, 0, OWNER),
    timeout: wholeNumber(o.timeout, 'timeout', 100, 1, OWNER),
    max: wholeNumber(o.max, 'max', 100_000, 1, OWNER),
    subscribe: booleanOption(o.subscribe, 'subscribe', true),
    keyspaceEvents: oneOf(o.keyspaceEvents, 'keyspaceEvents', ['enable', 'auto', 'off'], OWNER),
    heartbeatTtl: wholeNumber(o.heartbeatTtl, 'heartbeatTtl', 5000, 100, OWNER),
    auditMax: wholeNumber(o.auditMax, 'auditMax', 10_000, 0, OWNER),
    announce: booleanOption(o.announce, 'announce', true),
    logger: loggerOption(o.logger, OWNER),
  };
}

function redisOption(value: unknown): RedisClient {
  const client = value as Partial<RedisClient> | null;
  if (typeof client !== 'object' || client === null || typeof client.multi !== 'function') {
    throw new OptionsError('redis', 'an ioredis Redis or Cluster client', value, OWNER);
  }
  return client as RedisClient;
}

function prefixOption(value: unknown): string {
  if (value === undefined) return DEFAULT_PREFIX;
  if (typeof value !== 'string') throw new OptionsError('prefix', 'a string', value, OWNER);
  return value;
}

function booleanOption(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new OptionsError(option, 'true or false', value, OWNER);
  return value;
}
