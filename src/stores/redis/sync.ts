import type { Logger, LogLimiter } from '../../logger.js';
import type { NamespaceState } from '../../state/values.js';
import { withTimeout } from '../../timeout.js';
import { isCluster, type RedisClient, scanAll } from './client.js';
import type { RedisKeys } from './keys.js';
import { Replica } from './replica.js';
import { enableKeyspaceEvents, Subscriber } from './subscriber.js';

/**
 * Keeps the replica exact: every state loaded once (from the index, reconciled with one SCAN
 * when knowledge is (re)gained), then kept current by push, re-verified from the index every
 * `resyncInterval`, and trusted only while this process's canary keeps arriving through the
 * same keyspace notifications that carry an operator's `redis-cli SET`. A subscriber that is
 * connected but silent is the classic failure of kill switches; the canary turns it into a
 * detected one within two intervals, and the store then decides per key (the degraded mode).
 */

export type SyncMode = 'starting' | 'complete' | 'degraded';

/** Why the store is not complete. */
export type DegradedCause =
  /** `subscribe: false`, `keyspaceEvents: 'off'` or a Cluster: push cannot be complete. */
  | 'not-configured'
  /** The server has keyspace notifications off and the store may not turn them on. */
  | 'notifications-off'
  /** The subscriber connection is down. */
  | 'subscriber-lost'
  /** The canary did not come back: notifications stopped, or the subscriber went silent. */
  | 'push-silent'
  /** Loading or re-reading states failed. */
  | 'read-failed';

export interface SyncOptions {
  readonly subscribe: boolean;
  readonly keyspaceEvents: 'auto' | 'enable' | 'off';
  /** How often the canary is written; a canary unanswered for this long means push is silent. */
  readonly canaryInterval: number;
  /** How often the complete replica is re-read from the index. */
  readonly resyncInterval: number;
  /** Time budget of one command (ms). */
  readonly timeout: number;
  /** A name for this process's canary key. */
  readonly id: string;
}

export interface SyncEvents {
  /** A change to `namespace` was announced (push), whatever the mode. */
  changed(namespace: string): void;
  fenceRequested(message: string): void;
  /** The mode changed. */
  mode(mode: SyncMode, cause: DegradedCause | null): void;
  /** While complete: the state of `namespace`, just read into the replica. */
  state?(namespace: string, state: NamespaceState | null, via: 'push' | 'read'): void;
  /** Every state was just loaded into the replica, which is now complete. */
  loaded?(): void;
  /**
   * Every `canaryInterval` while the sync runs, whatever the mode (at least every second
   * without a canary, in the `not-configured` mode): the process announces itself (`nsro ps`).
   */
  tick?(): void;
}

/**
 * Reads the named states and keeps the index truthful for them: a namespace whose key exists is
 * added, one whose key is gone removed. Atomic, so processes racing on the same change cannot
 * leave the index wrong. Replies `{value, pttl}` or 0 per name, in order.
 */
const READ_SCRIPT = `
local out = {}
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local ok, v = pcall(redis.call, 'GET', key)
  if ok and v then
    redis.call('SADD', ARGV[2], ARGV[i])
    out[#out + 1] = {v, redis.call('PTTL', key)}
  else
    if ok then redis.call('SREM', ARGV[2], ARGV[i]) end
    out[#out + 1] = 0
  end
end
return out`;

/**
 * Names read per round trip while loading: each read is one short script, so a load of 100,000
 * states never blocks Redis for long (one script over all of them held other processes'
 * canaries back for the whole load).
 */
const LOAD_BATCH = 1000;

type Entry = readonly [name: string, value: string | null, pttl: number];

export class Sync {
  readonly replica = new Replica();
  #mode: SyncMode = 'starting';
  #cause: DegradedCause | null = null;
  #subscriber: Subscriber | null = null;
  #listening = false;
  /** Bumped whenever the push path connects or drops: work begun before is void. */
  #generation = 0;
  /** The canary written and not yet seen back. */
  #canarySentAt: number | null = null;
  #canarySeq = 0;
  /** When the push path last proved itself (canary seen) while complete. */
  #provenAt: number | null = null;
  #loading = false;
  #loadedAt = 0;
  /** Names announced while a load was under way: re-read once it has landed. */
  #dirty: Set<string> | null = null;
  #batch: Set<string> | null = null;
  /** Push reads sent and not yet answered. */
  #readsOut = 0;
  /** Counts the changes this process made itself while push reads were out. */
  #localSeq = 0;
  /** Each such change's `#localSeq`, by name; emptied whenever no read is out. */
  readonly #localAt = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #startTimer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #first: Promise<void>;
  #settleFirst!: () => void;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly options: SyncOptions,
    private readonly logger: Logger,
    private readonly errors: LogLimiter,
    private readonly events: SyncEvents,
  ) {
    this.#first = new Promise((resolve) => {
      this.#settleFirst = resolve;
    });
  }

  get mode(): SyncMode {
    return this.#mode;
  }

  get cause(): DegradedCause | null {
    return this.#cause;
  }

  get subscribed(): boolean {
    return this.#listening;
  }

  /** When push last proved itself while the replica was complete; `null` if never. */
  get provenAt(): number | null {
    return this.#provenAt;
  }

  /** Resolves once the first sync has ended, complete or not. */
  get firstSync(): Promise<void> {
    return this.#first;
  }

  start(): void {
    if (this.#closed || this.#startTimer !== null || this.#subscriber !== null) return;
    const { subscribe, keyspaceEvents, canaryInterval } = this.options;
    const complete = subscribe && keyspaceEvents !== 'off' && !isCluster(this.redis);
    if (subscribe) {
      this.#subscriber = new Subscriber(
        this.redis,
        this.keys,
        { keyspace: complete, canaryKey: this.keys.canary(this.options.id) },
        this.errors,
        {
          changed: (name) => this.#changed(name),
          fenceRequested: (message) => this.events.fenceRequested(message),
          canary: () => this.#canarySeen(),
          listening: () => this.#connected(),
          lost: () => this.#lost(),
        },
      );
      this.#subscriber.start();
    }
    // A first sync that cannot finish (Redis down, notifications off and no CONFIG) must not
    // keep requests waiting: after this the store decides per key until push proves itself.
    this.#startTimer = setTimeout(
      () => {
        // A load still under way (100,000 states on a busy Redis take seconds) is not a silent
        // push path: requests stop waiting and are answered per key until it lands.
        if (this.#mode === 'starting' && !this.#loading) this.#degrade('push-silent');
        this.#settleFirst();
      },
      Math.max(2000, 2 * canaryInterval),
    );
    this.#startTimer.unref();
    if (!complete) {
      // Decided per key from the start; the first sync is the subscriber listening, if any.
      this.#setMode('degraded', 'not-configured', !subscribe);
      // No canary to tick with: the announcement gets a modest timer of its own.
      if (this.events.tick !== undefined) {
        this.#timer = setInterval(
          () => {
            if (!this.#closed) this.events.tick?.();
          },
          Math.max(1000, canaryInterval),
        );
        this.#timer.unref();
      }
      return;
    }
    this.#timer = setInterval(() => this.#tick(), canaryInterval);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    this.#generation++;
    if (this.#timer !== null) clearInterval(this.#timer);
    if (this.#startTimer !== null) clearTimeout(this.#startTimer);
    this.#timer = null;
    this.#subscriber?.close();
    this.#subscriber = null;
    this.#listening = false;
    this.replica.clear();
    // Nothing keeps the (now empty) replica current any more: a closed store reads per key,
    // trusted for `ttl`, instead of answering "no state" for everything.
    if (this.#mode !== 'degraded' || this.#cause !== 'not-configured') {
      this.#setMode('degraded', 'not-configured');
    }
    this.#settleFirst();
  }

  /**
   * Reads `names` straight from Redis into the replica, and returns their states: for the
   * fence's acknowledgement, which must not trust any copy.
   */
  async readNow(names: readonly string[]): Promise<(NamespaceState | null)[]> {
    const entries = await this.#read(names);
    return entries.map(([name, value, pttl]) => this.#apply(name, value, pttl, 'read'));
  }

  #connected(): void {
    if (this.#closed) return;
    this.#listening = true;
    if (this.#cause === 'not-configured') {
      this.#firstSettled();
      return;
    }
    const generation = ++this.#generation;
    this.#canarySentAt = null;
    void this.#prove(generation);
  }

  #lost(): void {
    if (this.#closed) return;
    this.#listening = false;
    this.#generation++;
    this.#canarySentAt = null;
    this.#degrade('subscriber-lost');
  }

  /** Makes sure notifications are on (where we may), then writes a canary to prove it. */
  async #prove(generation: number): Promise<void> {
    const on = await enableKeyspaceEvents(
      this.redis,
      this.options.keyspaceEvents === 'enable',
      this.options.timeout,
      this.errors,
    );
    if (generation !== this.#generation || this.#closed) return;
    if (on === false) {
      this.#degrade('notifications-off');
      return;
    }
    this.#sendCanary();
  }

  #sendCanary(): void {
    this.#canarySentAt = Date.now();
    const ttl = Math.max(10_000, 3 * this.options.canaryInterval);
    withTimeout(
      this.redis.set(this.keys.canary(this.options.id), String(++this.#canarySeq), 'PX', ttl),
      this.options.timeout,
    ).catch((error: unknown) => {
      this.errors.warn('canary', { err: error }, 'namespace-read-only: canary write failed');
    });
  }

  #canarySeen(): void {
    this.#canarySentAt = null;
    if (this.#mode === 'complete') {
      this.#provenAt = Date.now();
      return;
    }
    if (this.#listening && !this.#loading) void this.#load(this.#generation, true);
  }

  #tick(): void {
    if (this.#closed) return;
    // Announced whatever the mode: a process whose push path is down is what `nsro ps` is for.
    this.events.tick?.();
    if (!this.#listening) return;
    const now = Date.now();
    if (this.#canarySentAt !== null) {
      // Sent at the previous tick (or between two) and still not seen: loopback answers in
      // microseconds and a loaded network in milliseconds, so the push path is not delivering.
      // Detected within two intervals of going silent.
      if (now - this.#canarySentAt < this.options.canaryInterval / 2) return;
      this.#degrade('push-silent');
      void this.#prove(this.#generation);
      return;
    }
    this.#sendCanary();
    if (
      this.#mode === 'complete' &&
      !this.#loading &&
      now - this.#loadedAt >= this.options.resyncInterval
    ) {
      void this.#load(this.#generation, false);
    }
  }

  /**
   * Loads every state. `reconcile`: also SCAN for state keys the index lacks (set while no
   * process listened), which is done only when knowledge is (re)gained, never on a routine
   * re-verification.
   */
  async #load(generation: number, reconcile: boolean): Promise<void> {
    this.#loading = true;
    this.#dirty = new Set();
    const issuedAt = Date.now();
    try {
      const found = new Map<string, Entry>();
      let cursor = '0';
      do {
        const [next, names] = await withTimeout(
          this.redis.sscan(this.keys.index, cursor, 'COUNT', LOAD_BATCH),
          this.options.timeout,
        );
        cursor = next;
        // SSCAN may return a member twice; reading it twice is harmless.
        for (const entry of await this.#read(names))
          if (entry[1] !== null) found.set(entry[0], entry);
      } while (cursor !== '0');
      if (reconcile) {
        const keys = await scanAll(this.redis, this.keys.statePattern);
        const missing = keys.map((k) => this.keys.namespaceOf(k)).filter((n) => !found.has(n));
        for (let i = 0; i < missing.length; i += LOAD_BATCH) {
          for (const entry of await this.#read(missing.slice(i, i + LOAD_BATCH))) {
            if (entry[1] !== null) found.set(entry[0], entry);
          }
        }
      }
      const entries = [...found.values()];
      if (generation !== this.#generation || this.#closed) return;
      // A value that was already there when the process started (or while it did not listen)
      // is warned of once too, when it is loaded.
      const was = entries.map(([name]) => this.replica.get(name)?.unrecognized);
      const changed = this.replica.replace(entries, issuedAt);
      for (const [i, [name]] of entries.entries()) {
        this.#warnUnrecognized(name, was[i], this.replica.get(name));
      }
      if (this.#mode === 'complete' && changed.length > 0) {
        this.errors.warn(
          'resync',
          { namespaces: changed.slice(0, 20), count: changed.length },
          'namespace-read-only: re-verification found states push had not delivered',
        );
      }
      this.#loadedAt = issuedAt;
      const dirty = this.#dirty;
      this.#dirty = null;
      if (dirty.size > 0) this.#queueRead(...dirty);
      if (this.#mode !== 'complete') {
        this.#provenAt = Date.now();
        this.#setMode('complete', null);
      }
      this.events.loaded?.();
    } catch (error) {
      this.errors.error('load', { err: error }, 'namespace-read-only: loading states failed');
      if (generation === this.#generation) this.#degrade('read-failed');
    } finally {
      this.#loading = false;
      this.#dirty = null;
    }
  }

  #changed(name: string): void {
    if (name.length === 0) return;
    this.events.changed(name);
    if (this.#dirty !== null) this.#dirty.add(name);
    if (this.#mode === 'complete' || this.#loading) this.#queueRead(name);
  }

  /** Every name announced in the same tick shares one round trip. */
  #queueRead(...names: string[]): void {
    if (this.#batch === null) {
      this.#batch = new Set();
      queueMicrotask(() => this.#flushReads());
    }
    for (const name of names) this.#batch.add(name);
  }

  /**
   * The store wrote `name` itself and put the result in the replica. A push read sent before
   * that may answer with the value the change replaced, after the change is in the replica: such
   * an answer is not applied but read again (see `#flushReads`).
   */
  madeLocally(name: string): void {
    if (this.#readsOut > 0) this.#localAt.set(name, ++this.#localSeq);
    if (this.#dirty !== null) this.#dirty.add(name);
  }

  #flushReads(): void {
    const batch = this.#batch;
    this.#batch = null;
    if (batch === null || batch.size === 0) return;
    const generation = this.#generation;
    const sentAt = this.#localSeq;
    this.#readsOut++;
    this.#read([...batch])
      .then(
        (entries) => {
          if (generation !== this.#generation || this.#closed) return;
          for (const [name, value, pttl] of entries) {
            // Older than a change this process made since it was sent, or not: reading again,
            // after that change, is the answer either way (a third process may have written
            // between the two, and nothing would announce it again).
            if ((this.#localAt.get(name) ?? 0) > sentAt) this.#queueRead(name);
            else this.#apply(name, value, pttl, 'push');
          }
        },
        (error: unknown) => {
          this.errors.error('read', { err: error }, 'namespace-read-only: Redis read failed');
          if (generation === this.#generation && this.#mode === 'complete') {
            this.#degrade('read-failed');
          }
        },
      )
      .finally(() => {
        if (--this.#readsOut === 0) this.#localAt.clear();
      });
  }

  async #read(names: readonly string[]): Promise<Entry[]> {
    if (names.length === 0) return [];
    const replies = (await withTimeout(
      this.redis.eval(READ_SCRIPT, 0, this.keys.statePrefix, this.keys.index, ...names),
      this.options.timeout,
    )) as unknown[];
    return names.map((name, i) => {
      const reply = replies[i];
      return Array.isArray(reply)
        ? [name, String(reply[0]), Number(reply[1])]
        : [name, null, Number.NaN];
    });
  }

  #apply(
    name: string,
    value: string | null,
    pttl: number,
    via: 'push' | 'read',
  ): NamespaceState | null {
    const before = this.replica.get(name);
    const after = this.replica.apply(name, value, pttl);
    this.#warnUnrecognized(name, before?.unrecognized, after);
    const was = before !== null && before.state !== 'active';
    const now = after !== null && after.state !== 'active';
    if (was !== now) {
      this.logger.info(
        { namespace: name, state: now ? 'maintenance' : 'writable', via },
        now
          ? 'namespace-read-only: namespace entered maintenance'
          : 'namespace-read-only: namespace left maintenance',
      );
    }
    // Outside the complete mode the replica is not what the process goes by: the cache reports.
    if (this.#mode === 'complete') this.events.state?.(name, after, via);
    return after;
  }

  /** Once per namespace and value: `was` is the unrecognised value held before, if any. */
  #warnUnrecognized(name: string, was: string | undefined, now: NamespaceState | null): void {
    if (now?.unrecognized === undefined || now.unrecognized === was) return;
    this.errors.warn(
      `unrecognized:${name}`,
      { namespace: name, value: now.unrecognized },
      'namespace-read-only: unrecognised state value; treated as maintenance',
    );
  }

  #degrade(cause: DegradedCause): void {
    if (this.#mode === 'degraded' && this.#cause === cause) return;
    this.#setMode('degraded', cause);
  }

  #setMode(mode: SyncMode, cause: DegradedCause | null, settle = true): void {
    const previous = this.#mode;
    this.#mode = mode;
    this.#cause = cause;
    if (mode === 'degraded' && cause !== 'not-configured') {
      this.errors.warn(
        `degraded:${cause}`,
        { cause, was: previous },
        'namespace-read-only: state knowledge is not complete; deciding per key (cached for `ttl`) until push proves itself again',
      );
    } else if (mode === 'complete' && previous === 'degraded') {
      this.logger.info({}, 'namespace-read-only: push proven again; state knowledge complete');
    }
    this.events.mode(mode, cause);
    if (settle) this.#firstSettled();
  }

  #firstSettled(): void {
    if (this.#startTimer !== null) {
      clearTimeout(this.#startTimer);
      this.#startTimer = null;
    }
    this.#settleFirst();
  }
}
