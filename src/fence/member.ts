import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { ProcessInfo } from '../errors.js';
import type { LogLimiter } from '../logger.js';
import type { RedisClient } from '../stores/redis/client.js';
import type { RedisKeys } from '../stores/redis/keys.js';
import type { InflightWrites } from './inflight.js';
import { deregister, heartbeat } from './registry.js';

/**
 * The migration fence. Every process that guards writes registers itself with a heartbeat (the
 * registry, registry.ts, is the live set). An operator's wait bumps the `epoch` field of the hash
 * `<prefix>fence:<ns>` and asks, on `<prefix>fence`, for acknowledgements; each live process
 * re-reads the state, and once it sees the namespace closed and its own admitted writes to it have
 * finished, it records the epoch in the same hash under its id. The wait returns when every live
 * process has acknowledged this epoch or a later one.
 *
 * The counter and the acknowledgements live in one key, and an acknowledgement is only recorded
 * while it does not exceed the counter, so losing keys (eviction, a restart without persistence)
 * can never leave an old acknowledgement that satisfies a newer wait.
 *
 * Time is only ever measured by a process's own monotonic clock (its lease) and by Redis's clock
 * (the registry's leases); no two machines' clocks are compared.
 */

export interface FenceOptions {
  /** How long a process counts as alive after its last heartbeat (ms). */
  readonly heartbeatTtl: number;
}

/** Heartbeat interval while draining for a fence (ms). */
const DRAINING_BEAT_MS = 100;

/**
 * Records an acknowledgement: KEYS[1] the fence hash, ARGV id, epoch, TTL. Not when the epoch is
 * above the hash's counter (the hash was lost since the wait began: that wait cannot be satisfied
 * any more, and a recreated hash must hold no acknowledgement above its counter); never lowers
 * a later acknowledgement. Returns 1 when the process's acknowledgement is now >= epoch.
 */
export const ACK_SCRIPT = `
local epoch = tonumber(ARGV[2])
if epoch > tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') then return 0 end
if epoch > tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

/** How long an acknowledgement (and the fence hash) lives without a new wait (ms). */
export const ACK_TTL_MS = 24 * 3600 * 1000;

/** A process taking part in fences: heartbeat, lease, acknowledgements. */
export class FenceMember {
  readonly id = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
  readonly #startedAt = new Date().toISOString();
  #timer: NodeJS.Timeout | null = null;
  /** The faster beats of drains in progress, cleared by stop() even if a drain never ends. */
  readonly #reporting = new Set<NodeJS.Timeout>();
  #stopped = false;
  /** Local monotonic time until which our registration certainly exists. */
  #leaseUntil = 0;
  /** Per namespace, the wait last acknowledged (its repeated requests need no work). */
  readonly #acked = new Map<string, string>();
  readonly #working = new Set<string>();
  /** The writes in flight of every guard using the store. */
  readonly #inflight = new Set<InflightWrites>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    inflight: InflightWrites,
    private readonly options: FenceOptions,
    /** A fresh read (cache bypassed) of whether writes to `namespace` are closed. */
    private readonly closedNow: (namespace: string) => Promise<boolean>,
    private readonly errors: LogLimiter,
    /**
     * Called when a heartbeat succeeds after our lease had run out: a wait may have stopped
     * counting us meanwhile, so nothing read before may be trusted (we heard no fence request).
     */
    private readonly forget: () => void = () => undefined,
  ) {
    this.#inflight.add(inflight);
  }

  /** Another guard on the same store: its writes count too. */
  track(inflight: InflightWrites): void {
    this.#inflight.add(inflight);
  }

  /** A guard closed: its writes no longer count. Returns how many guards are left. */
  untrack(inflight: InflightWrites): number {
    this.#inflight.delete(inflight);
    return this.#inflight.size;
  }

  /** Resolves once every guard's writes to `namespace` have drained. */
  async #drained(namespace: string): Promise<void> {
    for (;;) {
      const busy = [...this.#inflight].find((writes) => writes.count(namespace) > 0);
      if (busy === undefined) return;
      await busy.drained(namespace);
    }
  }

  /** Writes in flight per namespace (`*`: all of them), over every guard using the store. */
  inflight(): Record<string, number> {
    return this.#snapshot();
  }

  #snapshot(): Record<string, number> {
    const total: Record<string, number> = {};
    for (const writes of this.#inflight) {
      for (const [ns, n] of Object.entries(writes.snapshot())) total[ns] = (total[ns] ?? 0) + n;
    }
    return total;
  }

  /**
   * False once our heartbeat may have lapsed: an operator's wait no longer counts us, so we
   * must not admit writes it would not wait for.
   */
  holdsLease(): boolean {
    return performance.now() < this.#leaseUntil;
  }

  start(): void {
    if (this.#timer !== null) return;
    void this.#beat();
    this.#timer = setInterval(
      () => void this.#beat(),
      Math.max(50, Math.floor(this.options.heartbeatTtl / 4)),
    );
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const reporting of this.#reporting) clearInterval(reporting);
    this.#reporting.clear();
    this.#leaseUntil = 0;
    // Our acknowledgements go too: a hash in use every day would otherwise keep them for ever.
    const acked = [...this.#acked.keys()].map((ns) =>
      this.redis.hdel(this.keys.fence(ns), this.id),
    );
    this.#acked.clear();
    // Whatever fails expires by itself.
    await Promise.allSettled([deregister(this.redis, this.keys, this.id), ...acked]);
  }

  async #beat(): Promise<void> {
    // A stopped member must not register again: no operator's wait may count it any more.
    if (this.#stopped) return;
    const sentAt = performance.now();
    const info: ProcessInfo = {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      startedAt: this.#startedAt,
      inflight: this.#snapshot(),
    };
    try {
      await heartbeat(this.redis, this.keys, info, this.options.heartbeatTtl);
      // Only after a lease we held ran out: the first registration follows the guard's creation
      // by moments, and the subscriber's start makes anything read before it stale anyway.
      const lapsed = this.#leaseUntil > 0 && performance.now() >= this.#leaseUntil;
      // Measured from when we sent it: Redis cannot count us for longer than heartbeatTtl after.
      this.#leaseUntil = sentAt + this.options.heartbeatTtl;
      if (lapsed) this.forget();
    } catch (error) {
      this.errors.warn('heartbeat', { err: error }, 'namespace-read-only: heartbeat failed');
    }
  }

  /**
   * An operator asked every process to acknowledge `epoch` for `namespace`; `wait` identifies that
   * operator's wait, whose request is repeated until it ends.
   */
  async requested(namespace: string, epoch: number, wait = ''): Promise<void> {
    // Only a repeat of the same wait is skipped, never a lower or equal epoch: the counter starts
    // again from 1 when Redis lost the hash (eviction, a restart without persistence).
    const token = `${epoch}:${wait}`;
    if (this.#acked.get(namespace) === token || this.#working.has(namespace)) return;
    this.#working.add(namespace);
    try {
      if (!(await this.closedNow(namespace))) return; // not (yet) closed here: asked again shortly
      // Writes whose check finished in the same I/O turn as our read may not have counted
      // themselves yet; one macrotask later they all have.
      await new Promise((resolve) => setImmediate(resolve));
      const key = this.keys.fence(namespace);
      // What we are waiting for reaches the operator with each heartbeat (`inflight`); while we
      // wait, beat often, so a timed-out wait reports the writes still running, not those of
      // up to heartbeatTtl/4 ago.
      const reporting = setInterval(() => void this.#beat(), DRAINING_BEAT_MS);
      reporting.unref();
      this.#reporting.add(reporting);
      try {
        await this.#drained(namespace);
      } finally {
        clearInterval(reporting);
        this.#reporting.delete(reporting);
      }
      if (this.#stopped) return;
      const recorded = await this.redis.eval(
        ACK_SCRIPT,
        1,
        key,
        this.id,
        String(epoch),
        String(ACK_TTL_MS),
      );
      if (recorded === 1) this.#acked.set(namespace, token);
    } catch (error) {
      this.errors.warn(
        'fence',
        { err: error, namespace },
        'namespace-read-only: fence acknowledgement failed',
      );
    } finally {
      this.#working.delete(namespace);
    }
  }
}
