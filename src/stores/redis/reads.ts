import { StoreReadError } from '../../errors.js';
import type { LogLimiter } from '../../logger.js';
import { type NamespaceState, toState } from '../../state/values.js';
import { withTimeout } from '../../timeout.js';
import { isCluster, type RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';

/**
 * Reading states from Redis: every key asked for in the same tick shares one round trip, each
 * round trip has a time budget, and after repeated failures a circuit stops asking for a moment
 * instead of piling calls onto a failing server.
 */

/** Failures in a row before the circuit opens, and how long it stays open. */
const CIRCUIT_THRESHOLD = 3;
const CIRCUIT_COOLDOWN_MS = 1000;

export class RedisReads {
  readonly #circuit = new Circuit(CIRCUIT_THRESHOLD, CIRCUIT_COOLDOWN_MS);
  #batch: Map<string, Deferred> | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly timeoutMs: number,
    private readonly errors: LogLimiter,
  ) {}

  get circuitOpen(): boolean {
    return this.#circuit.open;
  }

  /** Queues `key` for the next round trip; every key asked for in the same tick shares it. */
  load(key: string): Promise<NamespaceState | null> {
    if (!this.#circuit.allows()) {
      return Promise.reject(new StoreReadError('Redis failing; not asking for a moment'));
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

  /**
   * One read for many keys: MGET (per-key GETs on a Cluster, whose keys live in different
   * slots), then PTTL only for keys that exist — an open namespace costs exactly one command.
   * No budget and no circuit: for the operator's reads (`list`, `wait`).
   */
  async read(names: readonly string[]): Promise<(NamespaceState | null)[]> {
    if (names.length === 0) return [];
    const keys = names.map((n) => this.keys.state(n));
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

  #flush(): void {
    const batch = this.#batch;
    this.#batch = null;
    if (batch === null) return;
    const keys = [...batch.keys()];
    withTimeout(this.read(keys), this.timeoutMs).then(
      (states) => {
        this.#circuit.succeeded();
        for (const [i, key] of keys.entries()) batch.get(key)?.resolve(states[i] ?? null);
      },
      (error: unknown) => {
        this.#circuit.failed();
        this.errors.error(
          'read',
          { err: error, circuitOpen: this.#circuit.open },
          'namespace-read-only: Redis read failed',
        );
        for (const deferred of batch.values()) deferred.reject(error);
      },
    );
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

/**
 * Stops asking a failing store for a moment instead of piling calls onto it, and lets one
 * probe through afterwards so recovery needs no restart.
 */
export class Circuit {
  #failures = 0;
  #openUntil = 0;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** False while open: fail fast without touching the store. */
  allows(): boolean {
    return this.#failures < this.threshold || this.now() >= this.#openUntil;
  }

  succeeded(): void {
    this.#failures = 0;
  }

  failed(): void {
    this.#failures++;
    if (this.#failures >= this.threshold) this.#openUntil = this.now() + this.cooldownMs;
  }

  get open(): boolean {
    return !this.allows();
  }
}

class Deferred {
  resolve!: (value: NamespaceState | null) => void;
  reject!: (error: unknown) => void;
  readonly promise = new Promise<NamespaceState | null>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
}
