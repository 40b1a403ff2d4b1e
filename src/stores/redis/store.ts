import { hostname } from 'node:os';
import { StateValueError } from '../../errors.js';
import type { InflightWrites } from '../../fence/inflight.js';
import { FenceMember } from '../../fence/member.js';
import { type WaitOptions, type WaitResult, waitForFence } from '../../fence/wait.js';
import type { Logger } from '../../logger.js';
import { namespaceKey } from '../../request/namespace-name.js';
import {
  checkStateInput,
  checkTtl,
  type NamespaceState,
  type StateInput,
  serializeState,
} from '../../state/values.js';
import { ChangeListeners, checkChangeOptions, KnownStates } from '../changes.js';
import type {
  DeleteOptions,
  SetOptions,
  StateChangeListener,
  StateEntry,
  StateStore,
  StoreObservation,
  WriterRegistration,
} from '../store.js';
import { Announcer, type LiveProcess, readAnnouncements } from './announce.js';
import { type AuditEntry, type AuditOptions, readAudit, readLatest, writeChange } from './audit.js';
import { StateCache } from './cache.js';
import { isCluster, type RedisClient, type RedisClientLike, scanAll } from './client.js';
import { CountingLimiter } from './failures.js';
import { RedisKeys } from './keys.js';
import {
  type RedisStateStoreOptions,
  type RedisStoreConfig,
  resolveRedisOptions,
} from './options.js';
import { fromRedis, RedisReads } from './reads.js';
import type { Replica } from './replica.js';
import { type DegradedCause, Sync, type SyncMode } from './sync.js';

/**
 * States in Redis, shared by a fleet: `<prefix>state:<root namespace>` holds `maintenance`,
 * `active` or a JSON object — exactly what an operator types into `redis-cli`. A key TTL ends
 * the maintenance by itself and sets `Retry-After`.
 *
 * This class wires the parts: the key schema (keys.ts), batched and budgeted reads (reads.ts),
 * the in-process cache (cache.ts), the push path (subscriber.ts) and the migration fence
 * (fence/), the audit stream (audit.ts). In steady state a request costs no Redis round trip at
 * all.
 */

/** `store.enable()`: a maintenance, optionally scheduled, optionally waited for. */
export interface EnableOptions {
  /** `'maintenance'` (default), `'frozen'` (reads refused too) or `'report'` (a dry run). */
  readonly state?: 'maintenance' | 'frozen' | 'report';
  /** In force from this moment (a scheduled window); `ttl` then counts from it. */
  readonly startsAt?: Date;
  readonly message?: string;
  readonly reason?: string;
  /** Ends the maintenance by itself after this many ms (key TTL); also sets `until`. */
  readonly ttl?: number;
  /** Ends the maintenance by itself at this time (key TTL); instead of `ttl`. */
  readonly until?: Date;
  /** Return only once every live process obeys and its writes in flight have finished. */
  readonly wait?: boolean;
  /** For `wait`: give up after this many ms. Default 60000. */
  readonly timeout?: number;
  /** Who enables it, for the audit stream. Default `store@<hostname>:<pid>`. */
  readonly actor?: string;
}

export interface RedisStateStoreStatus {
  /**
   * `complete`: every state is held in this process and kept current by a proven push path;
   * decisions are local. `degraded`: states are read per key and trusted for `ttl`.
   * `starting`: the first sync is under way (requests wait for it within their budget).
   */
  readonly mode: SyncMode;
  /** Why the mode is `degraded`; `null` otherwise. */
  readonly cause: DegradedCause | null;
  /** The dedicated subscriber is connected and listening. */
  readonly subscribed: boolean;
  /** Milliseconds since the push path last proved itself (canary) while complete; `null` if never. */
  readonly knowledgeAge: number | null;
  /** States held in the complete copy (the namespaces not in the default state). */
  readonly states: number;
  /** Per-key reads are being refused without asking Redis after repeated failures. */
  readonly circuitOpen: boolean;
  /** Entries in the degraded mode's per-key cache. */
  readonly cached: number;
}

export class RedisStateStore implements StateStore {
  /** The client it was given (typed loosely in public: see RedisClientLike). */
  readonly redis: RedisClientLike;
  readonly #redis: RedisClient;
  readonly prefix: string;
  readonly #config: RedisStoreConfig;
  readonly #keys: RedisKeys;
  readonly #logger: Logger;
  readonly #errors: CountingLimiter;
  readonly #reads: RedisReads;
  readonly #cache: StateCache;
  readonly #sync: Sync;
  readonly #replica: Replica;
  #started = false;
  /** The last per-key read failed (Redis down or unreachable). */
  #failing = false;
  #member: FenceMember | null = null;
  readonly #listeners: ChangeListeners;
  /** What this process last knew of each state, whichever tier learned it: for `onStateChange`. */
  readonly #known: KnownStates;
  /** Who makes a change when the caller does not say. */
  readonly #actor = `store@${hostname()}:${process.pid}`;
  /** This store's id: its canary's and its announcement's (`nsro ps`). */
  readonly #id = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
  readonly #host = hostname();
  readonly #startedAt = new Date().toISOString();
  /** `null` when the store does not announce itself (`announce: false`, as the CLI's). */
  readonly #announcer: Announcer | null;

  constructor(options: RedisStateStoreOptions) {
    const config = resolveRedisOptions(options);
    this.#config = config;
    this.#redis = config.redis;
    this.redis = config.redis;
    this.prefix = config.prefix;
    this.#keys = new RedisKeys(config.prefix);
    this.#logger = config.logger;
    this.#errors = new CountingLimiter(this.#logger);
    this.#listeners = new ChangeListeners(this.#errors);
    this.#known = new KnownStates(this.#listeners, config.max);
    this.#reads = new RedisReads(this.#redis, this.#keys, config.timeout, this.#errors);
    this.#cache = new StateCache({
      max: config.max,
      ttl: config.ttl,
      staleIfError: config.staleIfError,
      logger: this.#logger,
      errors: this.#errors,
      load: (key) => this.#reads.load(key),
      // The per-key tier is what the process knows only while it is not complete.
      learned: (key, state, via, knownBefore) => {
        if (this.#sync.mode !== 'complete') this.#known.learned(key, state, via, knownBefore);
      },
    });
    this.#announcer = config.announce
      ? new Announcer(
          this.#redis,
          this.#keys,
          this.#id,
          config.canaryInterval,
          Math.max(config.timeout, 1000),
          this.#errors,
          () => this.#announcement(),
        )
      : null;
    const announcer = this.#announcer;
    this.#sync = new Sync(
      this.#redis,
      this.#keys,
      {
        subscribe: config.subscribe,
        keyspaceEvents: config.keyspaceEvents,
        canaryInterval: config.canaryInterval,
        resyncInterval: config.resyncInterval,
        timeout: config.timeout,
        id: this.#id,
      },
      this.#logger,
      this.#errors,
      {
        changed: (name) => this.#cache.invalidate(name),
        fenceRequested: (message) => this.#fenceRequested(message),
        // Per-key entries read before a change of mode may predate changes nobody pushed.
        mode: () => this.#cache.invalidateAll(),
        state: (name, state, via) => this.#known.learned(name, state, via),
        loaded: () =>
          this.#known.loaded(
            [...this.#replica.keys()].map((key) => [key, this.#replica.get(key)] as const),
          ),
        ...(announcer !== null && { tick: () => announcer.announce() }),
      },
    );
    this.#replica = this.#sync.replica;
  }

  /** The Redis key for a namespace (`'Acme/Team'` -> `nsro:state:acme`). */
  key(namespace: string): string {
    return this.#keys.state(namespaceKey(namespace));
  }

  /** Where `set` and `delete` announce a change; the message is the namespace key. */
  get channel(): string {
    return this.#keys.changes;
  }

  /** Where operators' fence requests arrive. */
  get fenceChannel(): string {
    return this.#keys.fenceChannel;
  }

  /** Synchronous on the hot path: for every namespace while complete, for cached keys otherwise. */
  peek(key: string): NamespaceState | null | undefined {
    const mode = this.#sync.mode;
    if (mode === 'complete') return this.#replica.get(key);
    if (mode === 'starting') {
      this.#start();
      return undefined;
    }
    return this.#cache.peek(key);
  }

  async get(namespace: string): Promise<NamespaceState | null> {
    const key = namespaceKey(namespace);
    this.#start();
    if (this.#sync.mode === 'starting') await this.#sync.firstSync;
    if (this.#sync.mode === 'complete') return this.#replica.get(key);
    try {
      const state = await this.#cache.get(key);
      this.#failing = false;
      return state;
    } catch (error) {
      // Redis is failing: the last complete knowledge answers for every namespace, cold ones
      // included, for as long as `staleIfError` allows.
      this.#failing = true;
      if (this.#recentlyComplete()) return this.#replica.get(key);
      throw error;
    }
  }

  /** See `StateStore.anyClosed`. */
  anyClosed(): boolean | Promise<boolean | undefined> | undefined {
    const mode = this.#sync.mode;
    if (mode === 'complete') return this.#replica.anyClosed();
    if (mode === 'starting') {
      this.#start();
      return this.#sync.firstSync.then(() =>
        this.#sync.mode === 'starting' ? undefined : (this.anyClosed() as boolean | undefined),
      );
    }
    // Only while Redis fails is the last complete knowledge the best there is; with Redis up and
    // push silent, per-key reads are better, and "is anything closed?" has no answer.
    return this.#failing && this.#recentlyComplete() ? this.#replica.anyClosed() : undefined;
  }

  /** See `StateStore.anyFrozen`: known only while complete. */
  anyFrozen(): boolean | undefined {
    return this.#sync.mode === 'complete' ? this.#replica.anyFrozen() : undefined;
  }

  /**
   * Writes the key, indexes it, appends the audit entry and announces the change in one atomic
   * step (one script; on a Cluster the entry follows, see audit.ts). `ttl` (ms) ends it by
   * itself; `actor` and `reason` go to the audit entry (the state's own `reason` wins).
   */
  async set(namespace: string, state: StateInput, options: SetOptions = {}): Promise<void> {
    const name = namespaceKey(namespace);
    const checked = checkStateInput(state);
    const ttl = checkTtl(options.ttl);
    const { actor, reason } = checkChangeOptions(options);
    await this.#change(name, serializeState(checked), ttl, actor, checked.reason ?? reason);
  }

  /** Deletes the key, with its index entry, audit entry and announcement (see `set`). */
  async delete(namespace: string, options: DeleteOptions = {}): Promise<void> {
    const name = namespaceKey(namespace);
    const { actor, reason } = checkChangeOptions(options);
    await this.#change(name, null, undefined, actor, reason);
  }

  async #change(
    name: string,
    value: string | null,
    ttl: number | undefined,
    actor: string | undefined,
    reason: string | undefined,
  ): Promise<void> {
    const { old, oldTtl, auditError } = await writeChange(
      this.#redis,
      this.#keys,
      this.#config.auditMax,
      { name, value, ttl, actor: actor ?? this.#actor, reason },
    );
    const before = old === null ? null : fromRedis(old, oldTtl);
    let after: NamespaceState | null = null;
    if (value === null) this.#replica.delete(name);
    else after = this.#replica.apply(name, value, ttl ?? -1);
    this.#sync.madeLocally(name);
    this.#cache.invalidate(name);
    this.#known.made(name, before, after);
    if (auditError !== null) throw auditError;
  }

  /**
   * The audit stream, newest first: `limit` entries at most (default 20), only `namespace`'s
   * when given. Each is a change made through a store or the CLI; a plain `redis-cli` change
   * appends nothing.
   */
  audit(options: AuditOptions = {}): Promise<AuditEntry[]> {
    return readAudit(this.#redis, this.#keys, options);
  }

  /**
   * Calls `listener` whenever this process learns that a state changed, however it was made
   * (`redis-cli` included): while complete, as soon as the change is pushed; in the degraded
   * mode, when the process next reads the key. Not for a re-read of the same state, nor for the
   * states found by the first load. Returns a function that stops the calls. Starts the store.
   */
  onStateChange(listener: StateChangeListener): () => void {
    const off = this.#listeners.add(listener);
    this.#start();
    return off;
  }

  /**
   * Puts `namespace` into maintenance. With `wait: true`, resolves only when every live process
   * has acknowledged it and finished the writes to it that it had admitted (see `wait`).
   */
  async enable(namespace: string, options: EnableOptions = {}): Promise<WaitResult | undefined> {
    const { message, reason, wait, timeout, startsAt, actor } = options;
    const state = options.state ?? 'maintenance';
    if (state !== 'maintenance' && state !== 'frozen' && state !== 'report') {
      throw new StateValueError("`state` must be 'maintenance', 'frozen' or 'report'", state);
    }
    if (
      startsAt !== undefined &&
      !(startsAt instanceof Date && Number.isFinite(startsAt.getTime()))
    ) {
      throw new StateValueError('`startsAt` must be a Date', startsAt);
    }
    const end = maintenanceEnd(options.ttl, options.until, startsAt);
    await this.set(
      namespace,
      {
        state,
        ...(message !== undefined && { message }),
        ...(reason !== undefined && { reason }),
        ...(end !== undefined && { until: end.until }),
        ...(startsAt !== undefined && { startsAt }),
      },
      {
        ...(end !== undefined && { ttl: end.ttl }),
        ...(actor !== undefined && { actor }),
      },
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
    const read = async () => (await this.#reads.read([name]))[0] ?? null;
    return waitForFence(this.#redis, this.#keys, name, read, options);
  }

  /** Registers this process for the migration fence; called by each guard using the store. */
  register(inflight: InflightWrites): WriterRegistration {
    if (this.#member === null) {
      this.#member = new FenceMember(
        this.#redis,
        this.#keys,
        inflight,
        { heartbeatTtl: this.#config.heartbeatTtl },
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
    let released = false;
    return {
      holdsLease: () => member.holdsLease(),
      release: async () => {
        if (released) return;
        released = true;
        if (member.untrack(inflight) > 0 || this.#member !== member) return;
        this.#member = null;
        await member.stop();
      },
    };
  }

  /** A read past every copy (which it refreshes): is `namespace` closed right now? */
  async #closedNow(namespace: string): Promise<boolean> {
    this.#cache.invalidate(namespace);
    const state = isCluster(this.#redis)
      ? await this.#cache.get(namespace)
      : ((await this.#sync.readNow([namespace]))[0] ?? null);
    return state !== null && state.state !== 'active';
  }

  /** Every namespace with a state, read straight from Redis (SCAN, every master of a Cluster). */
  async list(): Promise<StateEntry[]> {
    const keys = await scanAll(this.#redis, this.#keys.statePattern);
    const names = keys.map((k) => this.#keys.namespaceOf(k)).sort();
    const states = await this.#reads.read(names);
    return names.flatMap((namespace, i) => {
      const state = states[i];
      return state === null || state === undefined ? [] : [{ namespace, state }];
    });
  }

  /**
   * The newest audit entry of each namespace in `namespaces` (any spelling), in one pass over the
   * stream that stops once each is found; a namespace without one is absent from the map.
   */
  lastChanges(namespaces: readonly string[]): Promise<Map<string, AuditEntry>> {
    return readLatest(this.#redis, this.#keys, [...new Set(namespaces.map(namespaceKey))]);
  }

  /**
   * Every live process that announces itself under this prefix (`nsro ps`): each store that
   * guards, fence or not, once started. Sorted by id; costs what the live processes cost, not
   * what the keyspace holds.
   */
  processes(): Promise<LiveProcess[]> {
    return readAnnouncements(this.#redis, this.#keys);
  }

  /** What this process announces: read at each announcement, so nothing is measured per request. */
  #announcement() {
    const status = this.status();
    return {
      id: this.#id,
      host: this.#host,
      pid: process.pid,
      startedAt: this.#startedAt,
      mode: status.mode,
      cause: status.cause,
      knowledgeAge: status.knowledgeAge,
      states: status.mode === 'complete' ? status.states : null,
      inflight: this.#member?.inflight() ?? null,
    };
  }

  /** Resolves once the first sync has ended (complete or degraded). For tests and probes. */
  async ready(): Promise<RedisStateStoreStatus> {
    this.#start();
    await this.#sync.firstSync;
    return this.status();
  }

  status(): RedisStateStoreStatus {
    const proven = this.#sync.provenAt;
    return {
      mode: this.#sync.mode,
      cause: this.#sync.cause,
      subscribed: this.#sync.subscribed,
      knowledgeAge: proven === null ? null : Date.now() - proven,
      states: this.#replica.size,
      circuitOpen: this.#reads.circuitOpen,
      cached: this.#cache.size,
    };
  }

  /**
   * For the guard's metrics: while complete, the states other than `active` held in the copy and
   * how long ago push last proved itself; outside it neither is known. Plus the store's own
   * failures so far (`redis-read`, `redis-load`, `redis-canary`, `redis-subscriber`...).
   */
  observe(): StoreObservation {
    const complete = this.#sync.mode === 'complete';
    const proven = this.#sync.provenAt;
    return {
      inMaintenance: complete ? this.#replica.closedCount() : undefined,
      knowledgeAge: complete && proven !== null ? Date.now() - proven : undefined,
      live: complete,
      errors: this.#errors.counts,
    };
  }

  /**
   * Stops the heartbeat, the canary, the announcement (deleted) and the subscriber connection;
   * the client you passed in stays open. Guards using this store stop being able to read it:
   * close them first.
   */
  async close(): Promise<void> {
    // Stops announcing at once; the announcement is deleted once any under way has landed.
    const unannounced = this.#announcer?.stop();
    const member = this.#member;
    this.#member = null;
    await member?.stop();
    this.#sync.close();
    this.#cache.clear();
    await unannounced;
  }

  #start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#sync.start();
    const announcer = this.#announcer;
    // Announced once the first sync has ended (its mode is then known), then on every tick. Not
    // at once on a Cluster: a command sent to a node whose connection is still opening is
    // refused and retried 100 ms later by ioredis (without an offline queue), so announcing
    // while the first requests open their connections could cost one of their reads its budget.
    // The first tick (a second later) announces it there.
    if (announcer !== null && !isCluster(this.#redis)) {
      void this.#sync.firstSync.then(() => announcer.announce(true));
    }
  }

  /** The last complete knowledge is recent enough to answer while Redis fails. */
  #recentlyComplete(): boolean {
    const proven = this.#sync.provenAt;
    return proven !== null && Date.now() - proven <= this.#config.staleIfError;
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
}

/** `enable()`'s end, as both a key TTL and an `until`, from whichever of the two was given. */
function maintenanceEnd(
  ttl: number | undefined,
  until: Date | undefined,
  startsAt: Date | undefined,
): { ttl: number; until: Date } | undefined {
  if (ttl !== undefined && until !== undefined) {
    throw new StateValueError('give `ttl` or `until`, not both', { ttl, until });
  }
  const now = Date.now();
  if (until !== undefined) {
    const left = until instanceof Date ? until.getTime() - now : Number.NaN;
    if (!(left > 0)) throw new StateValueError('`until` must be a Date in the future', until);
    if (startsAt !== undefined && startsAt.getTime() >= until.getTime()) {
      throw new StateValueError('`startsAt` must come before `until`', { startsAt, until });
    }
    return { ttl: Math.ceil(left), until };
  }
  if (ttl === undefined) return undefined;
  // A scheduled window lasts `ttl` from its start; the key lives until its end.
  const from = Math.max(startsAt?.getTime() ?? now, now);
  const end = from + (checkTtl(ttl) ?? ttl);
  return { ttl: end - now, until: new Date(end) };
}
