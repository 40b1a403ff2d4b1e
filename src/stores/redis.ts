import type { Cluster, Redis } from 'ioredis';
import pino from 'pino';
import { Circuit, withTimeout } from '../circuit.js';
import { FenceMember, type WaitOptions, type WaitResult, waitForFence } from '../fence.js';
import type { InflightWrites } from '../inflight.js';
import { LogLimiter } from '../log-limiter.js';
import { namespaceKey } from '../namespace-name.js';
import type { Logger } from '../options.js';
import {
  checkStateInput,
  type NamespaceState,
  type StateInput,
  serializeState,
  toState,
} from '../state.js';
import { StateCache } from '../state-cache.js';
import type { SetOptions, StateStore, WriterRegistration } from '../store.js';
import { escapeGlob, isCluster, scanAll } from './redis-keys.js';

/**
 * States in Redis, shared by a fleet: `<prefix>state:<root namespace>` holds `maintenance`,
 * `active` or a JSON object — exactly what an operator types into `redis-cli`. A key TTL ends
 * the maintenance by itself and sets `Retry-After`.
 *
 * In front of Redis sits an in-process cache (see StateCache) kept honest by push: `set` and
 * `delete` announce themselves on `<prefix>changes`, and changes made with plain `redis-cli`
 * arrive as keyspace notifications when the server emits them. In steady state a request costs
 * no Redis round trip at all.
 */

export interface RedisStateStoreOptions {
  /** An ioredis `Redis` or `Cluster`. It stays yours: the store never closes it. */
  readonly redis: Redis | Cluster;
  /** Key prefix. Default `'nsro:'`. */
  readonly prefix?: string;
  /** Cache entry lifetime (ms) while changes may arrive without a push. Default 1000. */
  readonly ttl?: number;
  /** Cache entry lifetime (ms) while every change is pushed (subscriber healthy, keyspace events on). Default 30000. */
  readonly pushTtl?: number;
  /** Serve a last-known value up to this old (ms) when Redis fails. Default 30000; 0 disables. */
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
   * Keyspace notifications, which carry plain `redis-cli SET`/`DEL`/expiry to every process:
   * `'auto'` (default) uses them when the server has them on, `'enable'` turns them on with
   * `CONFIG SET` where permitted, `'off'` ignores them. Not available on a Cluster.
   */
  readonly keyspaceEvents?: 'auto' | 'enable' | 'off';
  /**
   * How long a guarding process counts as alive for the migration fence after its last
   * heartbeat (ms). Default 5000. A process that cannot renew it in time refuses writes.
   */
  readonly heartbeatTtl?: number;
  /** A pino-compatible logger. Default: silent. */
  readonly logger?: Logger;
}

/** `store.enable()`: a maintenance, optionally waited for. */
export interface EnableOptions {
  readonly message?: string;
  readonly reason?: string;
  /** Ends the maintenance by itself after this many ms (key TTL); also sets `until`. */
  readonly ttl?: number;
  /** Return only once every live process obeys and its writes in flight have finished. */
  readonly wait?: boolean;
  /** For `wait`: give up after this many ms. Default 60000. */
  readonly timeout?: number;
}

export interface RedisStateStoreStatus {
  /** The dedicated subscriber is connected and listening. */
  readonly subscribed: boolean;
  /** Direct `redis-cli` changes reach us (keyspace notifications are on and subscribed). */
  readonly keyspaceEvents: boolean;
  /** Cache entries currently live `pushTtl` rather than `ttl`. */
  readonly trusted: boolean;
  /** Reads are being refused without asking Redis after repeated failures. */
  readonly circuitOpen: boolean;
  readonly cached: number;
}

/** Failures in a row before the circuit opens, and how long it stays open. */
const CIRCUIT_THRESHOLD = 3;
const CIRCUIT_COOLDOWN_MS = 1000;

export class RedisStateStore implements StateStore {
  readonly redis: Redis | Cluster;
  readonly prefix: string;
  readonly #options: Required<Omit<RedisStateStoreOptions, 'redis' | 'prefix' | 'logger'>>;
  readonly #logger: Logger;
  readonly #errors: LogLimiter;
  readonly #cache: StateCache;
  readonly #circuit = new Circuit(CIRCUIT_THRESHOLD, CIRCUIT_COOLDOWN_MS);
  #batch: Map<string, Deferred> | null = null;
  #subscriber: Redis | Cluster | null = null;
  #started: Promise<void> | null = null;
  #subscribed = false;
  #keyspace = false;
  #closed = false;
  #member: FenceMember | null = null;

  constructor(options: RedisStateStoreOptions) {
    const o = (options ?? {}) as Partial<RedisStateStoreOptions>;
    if (
      typeof o.redis !== 'object' ||
      o.redis === null ||
      typeof (o.redis as Redis).multi !== 'function'
    ) {
      throw new TypeError(
        'namespace-read-only: RedisStateStore option `redis` must be an ioredis Redis or Cluster client',
      );
    }
    if (o.prefix !== undefined && typeof o.prefix !== 'string') {
      throw new TypeError('namespace-read-only: RedisStateStore option `prefix` must be a string');
    }
    this.redis = o.redis;
    this.prefix = o.prefix ?? 'nsro:';
    this.#options = {
      ttl: milliseconds(o.ttl, 'ttl', 1000),
      pushTtl: milliseconds(o.pushTtl, 'pushTtl', 30_000),
      staleIfError: milliseconds(o.staleIfError, 'staleIfError', 30_000, 0),
      timeout: milliseconds(o.timeout, 'timeout', 100),
      max: milliseconds(o.max, 'max', 100_000),
      subscribe: o.subscribe ?? true,
      keyspaceEvents: o.keyspaceEvents ?? 'auto',
      heartbeatTtl: milliseconds(o.heartbeatTtl, 'heartbeatTtl', 5000, 100),
    };
    if (!['auto', 'enable', 'off'].includes(this.#options.keyspaceEvents)) {
      throw new TypeError(
        "namespace-read-only: RedisStateStore option `keyspaceEvents` must be 'auto', 'enable' or 'off'",
      );
    }
    this.#logger = o.logger ?? pino({ level: 'silent' });
    this.#errors = new LogLimiter(this.#logger);
    this.#cache = new StateCache({
      max: this.#options.max,
      ttl: this.#options.ttl,
      pushTtl: this.#options.pushTtl,
      staleIfError: this.#options.staleIfError,
      logger: this.#logger,
      errors: this.#errors,
      load: (key) => this.#load(key),
    });
  }

  /** The Redis key for a namespace (`'Acme/Team'` -> `nsro:state:acme`). */
  key(namespace: string): string {
    return `${this.prefix}state:${namespaceKey(namespace)}`;
  }

  /** Where `set` and `delete` announce a change; the message is the namespace key. */
  get channel(): string {
    return `${this.prefix}changes`;
  }

  peek(key: string): NamespaceState | null | undefined {
    return this.#cache.peek(key);
  }

  async get(namespace: string): Promise<NamespaceState | null> {
    this.#start();
    return this.#cache.get(namespaceKey(namespace));
  }

  /** Writes the key and announces the change in one round trip. `ttl` (ms) ends it by itself. */
  async set(namespace: string, state: StateInput, options: SetOptions = {}): Promise<void> {
    const name = namespaceKey(namespace);
    const value = serializeState(checkStateInput(state));
    const ttl = options.ttl;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl <= 0)) {
      throw new TypeError(
        `namespace-read-only: \`ttl\` must be a positive whole number of milliseconds; received ${ttl}`,
      );
    }
    const multi = this.redis.multi();
    if (ttl === undefined) multi.set(this.key(name), value);
    else multi.set(this.key(name), value, 'PX', ttl);
    await exec(multi.publish(this.channel, name));
    this.#cache.invalidate(name);
  }

  async delete(namespace: string): Promise<void> {
    const name = namespaceKey(namespace);
    await exec(this.redis.multi().del(this.key(name)).publish(this.channel, name));
    this.#cache.invalidate(name);
  }

  /**
   * Puts `namespace` into maintenance. With `wait: true`, resolves only when every live process
   * has acknowledged it and finished the writes to it that it had admitted (see `wait`).
   */
  async enable(namespace: string, options: EnableOptions = {}): Promise<WaitResult | undefined> {
    const { message, reason, ttl, wait, timeout } = options;
    await this.set(
      namespace,
      {
        state: 'maintenance',
        ...(message !== undefined && { message }),
        ...(reason !== undefined && { reason }),
        ...(ttl !== undefined && { until: new Date(Date.now() + ttl) }),
      },
      ttl === undefined ? {} : { ttl },
    );
    return wait === true
      ? this.wait(namespace, timeout === undefined ? {} : { timeout })
      : undefined;
  }

  /**
   * The migration fence: resolves when every live guarding process has seen `namespace` (or `*`)
   * closed and its admitted writes there have finished, so work on the namespace can start
   * without a write landing after it. Rejects with `FenceTimeoutError` naming the processes that
   * did not acknowledge, and their writes in flight.
   */
  async wait(namespace: string, options: WaitOptions = {}): Promise<WaitResult> {
    const name = namespaceKey(namespace);
    return waitForFence(
      this.redis,
      this.prefix,
      name,
      async () => (await this.#read([name]))[0] ?? null,
      options,
    );
  }

  /** Registers this process for the migration fence; called by each guard using the store. */
  register(inflight: InflightWrites): WriterRegistration {
    if (this.#member === null) {
      this.#member = new FenceMember(
        this.redis,
        this.prefix,
        inflight,
        { heartbeatTtl: this.#options.heartbeatTtl },
        (namespace) => this.#closedNow(namespace),
        this.#errors,
        () => this.#cache.invalidateAll(),
      );
      this.#member.start();
      this.#start();
    } else {
      this.#member.track(inflight);
    }
    const member = this.#member;
    return { holdsLease: () => member.holdsLease() };
  }

  /** Where operators' fence requests arrive. */
  get fenceChannel(): string {
    return `${this.prefix}fence`;
  }

  /** A read past the cache (which it refreshes): is `namespace` closed right now? */
  async #closedNow(namespace: string): Promise<boolean> {
    this.#cache.invalidate(namespace);
    const state = await this.#cache.get(namespace);
    return state !== null && state.state !== 'active';
  }

  /** Every namespace with a state, read straight from Redis (SCAN, every master of a Cluster). */
  async list(): Promise<{ namespace: string; state: NamespaceState }[]> {
    const keys = await scanAll(this.redis, `${escapeGlob(this.prefix)}state:*`);
    const names = keys.map((k) => k.slice(this.prefix.length + 'state:'.length)).sort();
    const states = await this.#read(names);
    return names.flatMap((namespace, i) => {
      const state = states[i];
      return state === null || state === undefined ? [] : [{ namespace, state }];
    });
  }

  /** Resolves once the subscriber has listened at least once (or could not). For tests and probes. */
  async ready(): Promise<RedisStateStoreStatus> {
    this.#start();
    await this.#started;
    return this.status();
  }

  status(): RedisStateStoreStatus {
    return {
      subscribed: this.#subscribed,
      keyspaceEvents: this.#subscribed && this.#keyspace,
      trusted: this.#cache.trusted,
      circuitOpen: this.#circuit.open,
      cached: this.#cache.size,
    };
  }

  /** Unsubscribes and drops the subscriber connection; the client you passed in stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    const member = this.#member;
    this.#member = null;
    await member?.stop();
    const subscriber = this.#subscriber;
    this.#subscriber = null;
    this.#subscribed = false;
    this.#cache.setTrusted(false);
    if (subscriber !== null) {
      subscriber.removeAllListeners('ready');
      subscriber.disconnect();
    }
    this.#cache.clear();
  }

  // ---- reading ---------------------------------------------------------------------------

  /** Queues `key` for the next round trip; every key asked for in the same tick shares it. */
  #load(key: string): Promise<NamespaceState | null> {
    if (!this.#circuit.allows()) {
      return Promise.reject(
        new Error('namespace-read-only: Redis failing; not asking for a moment'),
      );
    }
    if (this.#batch === null) {
      this.#batch = new Map();
      queueMicrotask(() => this.#flush());
    }
    let deferred = this.#batch.get(key);
    if (deferred === undefined) {
      deferred = new Deferred();
      this.#batch.set(key, deferred);
    }
    return deferred.promise;
  }

  #flush(): void {
    const batch = this.#batch;
    this.#batch = null;
    if (batch === null) return;
    const keys = [...batch.keys()];
    withTimeout(this.#read(keys), this.#options.timeout).then(
      (states) => {
        this.#circuit.succeeded();
        for (const [i, key] of keys.entries()) batch.get(key)?.resolve(states[i] ?? null);
      },
      (error: unknown) => {
        this.#circuit.failed();
        this.#errors.error(
          'read',
          { err: error, circuitOpen: this.#circuit.open },
          'namespace-read-only: Redis read failed',
        );
        for (const deferred of batch.values()) deferred.reject(error);
      },
    );
  }

  /**
   * One read for many keys: MGET (per-key GETs on a Cluster, whose keys live in different
   * slots), then PTTL only for keys that exist — an open namespace costs exactly one command.
   */
  async #read(names: readonly string[]): Promise<(NamespaceState | null)[]> {
    if (names.length === 0) return [];
    const keys = names.map((n) => `${this.prefix}state:${n}`);
    const values: (string | null)[] = isCluster(this.redis)
      ? await Promise.all(keys.map((k) => this.redis.get(k)))
      : await this.redis.mget(...keys);
    const present = keys.filter((_, i) => values[i] !== null);
    const ttls =
      present.length === 0 ? [] : await Promise.all(present.map((k) => this.redis.pttl(k)));
    const now = Date.now();
    let t = 0;
    return values.map((value) => (value === null ? null : fromRedis(value, ttls[t++], now)));
  }

  // ---- listening -------------------------------------------------------------------------

  #start(): void {
    if (this.#started !== null || this.#closed) return;
    if (!this.#options.subscribe) {
      this.#started = Promise.resolve();
      return;
    }
    this.#started = this.#keyspaceAvailable().then(
      (keyspace) => this.#subscribe(keyspace),
      () => this.#subscribe(false),
    );
  }

  async #keyspaceAvailable(): Promise<boolean> {
    const mode = this.#options.keyspaceEvents;
    if (mode === 'off' || isCluster(this.redis)) return false;
    const redis = this.redis;
    try {
      const reply = (await withTimeout(
        redis.config('GET', 'notify-keyspace-events'),
        1000,
      )) as string[];
      const flags = reply[1] ?? '';
      if (keyspaceCovered(flags)) return true;
      if (mode !== 'enable') return false;
      await withTimeout(redis.config('SET', 'notify-keyspace-events', mergeFlags(flags)), 1000);
      return true;
    } catch (error) {
      this.#errors.warn(
        'keyspace',
        { err: error },
        'namespace-read-only: cannot read or enable keyspace notifications; relying on announcements and the TTL',
      );
      return false;
    }
  }

  async #subscribe(keyspace: boolean): Promise<void> {
    if (this.#closed) return;
    const subscriber = isCluster(this.redis)
      ? this.redis.duplicate([], { enableOfflineQueue: true, lazyConnect: false })
      : this.redis.duplicate({
          enableOfflineQueue: true,
          commandTimeout: undefined,
          lazyConnect: false,
        });
    this.#subscriber = subscriber;
    const db = isCluster(this.redis) ? 0 : (this.redis.options.db ?? 0);
    const keyspacePrefix = `__keyspace@${db}__:${this.prefix}state:`;

    subscriber.on('error', (error: unknown) => {
      this.#errors.warn(
        'subscriber',
        { err: error },
        'namespace-read-only: subscriber connection error',
      );
    });
    subscriber.on('close', () => {
      if (this.#subscribed)
        this.#logger.warn({}, 'namespace-read-only: subscriber lost; cache entries now live `ttl`');
      this.#subscribed = false;
      this.#cache.setTrusted(false);
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.#changed(message);
      else if (channel === this.fenceChannel) this.#fenceRequested(message);
    });
    subscriber.on('pmessage', (_pattern: string, channel: string) => {
      if (channel.startsWith(keyspacePrefix)) this.#changed(channel.slice(keyspacePrefix.length));
    });

    const listen = async () => {
      try {
        await subscriber.subscribe(this.channel, this.fenceChannel);
        if (keyspace) await subscriber.psubscribe(`${escapeGlob(keyspacePrefix)}*`);
        if (this.#closed) return;
        // Anything may have changed while nobody was listening.
        this.#cache.invalidateAll();
        this.#subscribed = true;
        this.#keyspace = keyspace;
        this.#cache.setTrusted(keyspace);
      } catch (error) {
        this.#errors.warn(
          'subscribe',
          { err: error },
          'namespace-read-only: subscribe failed; relying on the TTL',
        );
      }
    };
    subscriber.on('ready', () => void listen());
    await new Promise<void>((resolve) => {
      const done = () => {
        subscriber.off('ready', done);
        subscriber.off('end', done);
        setImmediate(resolve);
      };
      subscriber.on('ready', done);
      subscriber.on('end', done);
      setTimeout(done, 2000).unref();
    });
    await listen();
  }

  #fenceRequested(message: string): void {
    const member = this.#member;
    if (member === null) return;
    try {
      const { namespace, epoch, wait } = JSON.parse(message) as {
        namespace?: unknown;
        epoch?: unknown;
        wait?: unknown;
      };
      if (typeof namespace === 'string' && typeof epoch === 'number')
        void member.requested(namespace, epoch, typeof wait === 'string' ? wait : '');
    } catch {
      // not a request of ours
    }
  }

  #changed(name: string): void {
    if (name === '*' || name.length > 0) this.#cache.invalidate(name);
  }
}

/** A GET reply and a PTTL reply, as a state. */
export function fromRedis(
  value: string,
  ttl: number | undefined,
  now = Date.now(),
): NamespaceState {
  const state = toState(value);
  return ttl !== undefined && ttl > 0 ? { ...state, expiresAt: new Date(now + ttl) } : state;
}

/** `K` plus either `A` or all of `$` (strings), `g` (DEL, EXPIRE...) and `x` (expired). */
export function keyspaceCovered(flags: string): boolean {
  return (
    flags.includes('K') &&
    (flags.includes('A') || (flags.includes('$') && flags.includes('g') && flags.includes('x')))
  );
}

function mergeFlags(flags: string): string {
  let merged = flags;
  for (const f of 'K$gx') if (!merged.includes(f)) merged += f;
  return merged;
}

async function exec(multi: ReturnType<Redis['multi']>): Promise<void> {
  const replies = await multi.exec();
  if (replies === null) throw new Error('namespace-read-only: Redis transaction aborted');
  for (const [error] of replies) if (error) throw error;
}

function milliseconds(value: unknown, option: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new TypeError(
      `namespace-read-only: RedisStateStore option \`${option}\` must be a whole number >= ${min}; received ${String(value)}`,
    );
  }
  return value;
}

class Deferred {
  resolve!: (value: NamespaceState | null) => void;
  reject!: (error: unknown) => void;
  readonly promise = new Promise<NamespaceState | null>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
}
