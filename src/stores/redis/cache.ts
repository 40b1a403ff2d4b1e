import { LRUCache } from 'lru-cache';
import { StoreReadError } from '../../errors.js';
import type { Logger, LogLimiter } from '../../logger.js';
import type { NamespaceState } from '../../state/values.js';

/**
 * The Redis store's per-key tier, for when its knowledge is not complete (the degraded mode):
 * a size-bounded LRU of states (absent ones included), each trusted for `ttl`, single-flight
 * misses, freshness decided here rather than by lru-cache so that losing knowledge ages every
 * entry at once without a flush, and last-known values kept for stale-if-error.
 */

const MAX_REMEMBERED_FAILURES = 10_000;

export interface StateCacheOptions {
  /** Most namespaces kept. */
  readonly max: number;
  /** How long an entry is trusted (ms). */
  readonly ttl: number;
  /** How old a last-known value may be and still be served when the store fails (ms). */
  readonly staleIfError: number;
  readonly logger: Logger;
  readonly errors: LogLimiter;
  /** Reads several keys in one round trip; `null` for absent keys. */
  readonly load: (key: string) => Promise<NamespaceState | null>;
  /**
   * A read of `key` landed (not one a change discarded): its state, how the cache came to read
   * it, and whether the cache held an earlier value of it.
   */
  readonly learned?: (
    key: string,
    state: NamespaceState | null,
    via: Cause,
    knownBefore: boolean,
  ) => void;
  readonly now?: () => number;
}

interface Entry {
  readonly state: NamespaceState | null;
  /** When the read that produced it was issued: anything changed after this may be missing. */
  readonly at: number;
  /** The invalidateAll() generation the read was issued in; any later one makes it stale. */
  readonly generation: number;
}

/** How the cache came to re-read a key, for the transition log. */
export type Cause = 'push' | 'ttl' | 'miss';

interface FetchContext {
  readonly cause: Cause;
  readonly previous: Entry | undefined;
}

export class StateCache {
  readonly #lru: LRUCache<string, Entry, FetchContext>;
  readonly #options: StateCacheOptions;
  readonly #now: () => number;
  /** Bumped by invalidateAll(): a counter, not a time, so no read can tie with it. */
  #generation = 0;
  /** The latest read error per key, until a read of that key succeeds. */
  readonly #failures = new Map<string, unknown>();

  constructor(options: StateCacheOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#lru = new LRUCache<string, Entry, FetchContext>({
      max: options.max,
      allowStaleOnFetchRejection: true,
      fetchMethod: (key, stale, { context, signal }) => this.#fetch(key, stale, context, signal),
    });
  }

  /** The state when a fresh entry exists, else `undefined`. Synchronous: the hot path. */
  peek(key: string): NamespaceState | null | undefined {
    const entry = this.#lru.get(key);
    return entry !== undefined && this.#isFresh(entry, this.#now()) ? entry.state : undefined;
  }

  async get(key: string): Promise<NamespaceState | null> {
    const now = this.#now();
    const cached = this.#lru.get(key);
    if (cached !== undefined && this.#isFresh(cached, now)) return cached.state;
    const context: FetchContext = {
      cause: cached === undefined ? 'miss' : 'ttl',
      previous: cached,
    };
    let entry: Entry | undefined;
    for (let attempt = 0; entry === undefined && attempt < 4; attempt++) {
      entry = await this.#lru.fetch(key, { forceRefresh: true, context });
      if (entry !== undefined) break;
      // lru-cache answers `undefined` both when the read failed with no last-known value and
      // when a change announced meanwhile discarded the read; only the latter is worth a retry.
      const failure = this.#failures.get(key);
      if (failure !== undefined) throw failure;
    }
    if (entry === undefined) {
      throw new StoreReadError(`state of "${key}" kept changing while it was read`);
    }
    if (entry.at >= now || this.#isFresh(entry, this.#now())) return entry.state;
    // The read failed and lru-cache handed back the last-known value.
    if (this.#now() - entry.at <= this.#options.staleIfError) return entry.state;
    throw new StoreReadError(`state of "${key}" unreadable and the last known value is too old`);
  }

  /** A change to `key` was announced: forget it now and re-read it if anyone cared about it. */
  invalidate(key: string): void {
    const previous = this.#lru.get(key);
    this.#lru.delete(key); // also discards an in-flight read that began before the change
    if (previous === undefined) return;
    this.#lru
      .fetch(key, { forceRefresh: true, context: { cause: 'push', previous } })
      .catch(() => undefined); // errors are logged by the loader; the next request retries
  }

  /** Everything read so far may be out of date (the store's knowledge changed hands). */
  invalidateAll(): void {
    this.#generation++;
  }

  get size(): number {
    return this.#lru.size;
  }

  clear(): void {
    this.#lru.clear();
  }

  #isFresh(entry: Entry, now: number): boolean {
    if (entry.generation !== this.#generation) return false;
    const expiresAt = entry.state?.expiresAt;
    if (expiresAt !== undefined && now >= expiresAt.getTime()) return false;
    return now - entry.at <= this.#options.ttl;
  }

  async #fetch(
    key: string,
    stale: Entry | undefined,
    context: FetchContext,
    signal: AbortSignal,
  ): Promise<Entry> {
    const at = this.#now();
    const generation = this.#generation;
    let state: NamespaceState | null;
    try {
      state = await this.#options.load(key);
      this.#failures.delete(key);
    } catch (error) {
      // Remembered for get(), which cannot tell a failed read from a discarded one otherwise.
      if (this.#failures.size >= MAX_REMEMBERED_FAILURES) this.#failures.clear();
      this.#failures.set(key, error);
      throw error;
    }
    const entry: Entry = { state, at, generation };
    if (!signal.aborted) {
      const previous = context.previous ?? stale;
      this.#logTransition(key, previous, entry, context.cause);
      this.#options.learned?.(key, state, context.cause, previous !== undefined);
    }
    return entry;
  }

  #logTransition(key: string, previous: Entry | undefined, next: Entry, cause: Cause): void {
    const was = closed(previous?.state ?? null);
    const now = closed(next.state);
    if (
      next.state?.unrecognized !== undefined &&
      previous?.state?.unrecognized !== next.state.unrecognized
    ) {
      this.#options.errors.warn(
        `unrecognized:${key}`,
        { namespace: key, value: next.state.unrecognized },
        'namespace-read-only: unrecognised state value; treated as maintenance',
      );
    }
    if (previous === undefined || was === now) return;
    this.#options.logger.info(
      { namespace: key, state: now ? 'maintenance' : 'writable', via: cause },
      now
        ? 'namespace-read-only: namespace entered maintenance'
        : 'namespace-read-only: namespace left maintenance',
    );
  }
}

function closed(state: NamespaceState | null): boolean {
  return state !== null && state.state !== 'active';
}
