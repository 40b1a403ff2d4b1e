import { type Logger, LogLimiter, resolveLogger } from '../logger.js';
import { namespaceKey } from '../request/namespace-name.js';
import {
  checkStateInput,
  checkTtl,
  type NamespaceState,
  type StateInput,
  toState,
} from '../state/values.js';
import { ChangeListeners, checkChangeOptions } from './changes.js';
import type {
  DeleteOptions,
  SetOptions,
  StateChangeListener,
  StateEntry,
  StateStore,
  StoreObservation,
} from './store.js';

export interface MemoryStateStoreOptions {
  /**
   * A pino-compatible logger, for an unrecognised value given to `set` and a failing
   * `onStateChange` listener. Default: a pino logger at `warn` on stderr; `false` silences it.
   */
  readonly logger?: Logger | false;
}

/**
 * States held in this process: the default, for a single process, tests and demos. Every
 * process has its own; use `RedisStateStore` for a fleet.
 */
export class MemoryStateStore implements StateStore {
  readonly #states = new Map<string, NamespaceState>();
  /** The keys whose state closes writes: what `anyClosed()` looks at, however many are open. */
  readonly #closed = new Set<string>();
  /** How many of them cannot run out (no `ttl`): while any is, `anyClosed()` iterates nothing. */
  #closedForever = 0;
  /** The keys whose state is `frozen`: what `anyFrozen()` looks at. */
  readonly #frozen = new Set<string>();
  readonly #listeners: ChangeListeners;
  readonly #errors: LogLimiter;

  constructor(options: MemoryStateStoreOptions = {}) {
    const logger: unknown = (options as MemoryStateStoreOptions | null)?.logger;
    this.#errors = new LogLimiter(resolveLogger(logger, 'MemoryStateStore option'));
    this.#listeners = new ChangeListeners(this.#errors);
  }

  async get(namespace: string): Promise<NamespaceState | null> {
    return this.peek(namespaceKey(namespace));
  }

  /**
   * Accepts `'maintenance'`, `'active'` or `{ state, message?, until?, reason? }`. A raw string
   * that is none of these is kept and read back as maintenance (flagged `unrecognized`), the
   * same rule the Redis store applies to what an operator types. `ttl` (ms) ends the state by
   * itself, like a Redis key TTL. `actor` and `reason` are checked and otherwise unused: this
   * store keeps no audit trail.
   */
  async set(
    namespace: string,
    state: StateInput | string,
    options: SetOptions = {},
  ): Promise<void> {
    const key = namespaceKey(namespace);
    const value = typeof state === 'string' ? toState(state) : checkStateInput(state);
    const ttl = checkTtl(options.ttl);
    checkChangeOptions(options);
    const expiring = Object.freeze(
      ttl === undefined ? value : { ...value, expiresAt: new Date(Date.now() + ttl) },
    );
    const before = this.peek(key);
    if (value.unrecognized !== undefined && before?.unrecognized !== value.unrecognized) {
      // As the Redis store warns of a value typed into Redis: once per namespace and value.
      this.#errors.warn(
        `unrecognized:${key}`,
        { namespace: key, value: value.unrecognized },
        'namespace-read-only: unrecognised state value; treated as maintenance',
      );
    }
    this.#forget(key);
    this.#states.set(key, expiring);
    if (expiring.state !== 'active') {
      this.#closed.add(key);
      if (expiring.expiresAt === undefined) this.#closedForever++;
    }
    if (expiring.state === 'frozen') this.#frozen.add(key);
    this.#listeners.emit(key, before, expiring, 'local');
  }

  async delete(namespace: string, options: DeleteOptions = {}): Promise<void> {
    const key = namespaceKey(namespace);
    checkChangeOptions(options);
    const before = this.peek(key);
    this.#forget(key);
    this.#listeners.emit(key, before, null, 'local');
  }

  /**
   * Every namespace with a state (`active` included), sorted, as `RedisStateStore.list()` gives
   * them. A state whose `ttl` ran out is left out (and reported gone, as any read does).
   */
  async list(): Promise<StateEntry[]> {
    const entries: StateEntry[] = [];
    for (const namespace of [...this.#states.keys()].sort()) {
      const state = this.peek(namespace);
      if (state !== null) entries.push({ namespace, state });
    }
    return entries;
  }

  /**
   * Removes every state, one `delete` at a time (a listener hears of each), so that a test can
   * start again from nothing with the same store and the guard that reads it.
   */
  async clear(options: DeleteOptions = {}): Promise<void> {
    checkChangeOptions(options);
    // The keys as they were when it began: a listener that sets a state from its call cannot
    // keep the loop going, and a key it adds to the store is left alone.
    for (const key of [...this.#states.keys()].sort()) {
      const before = this.peek(key);
      this.#forget(key);
      this.#listeners.emit(key, before, null, 'local');
    }
  }

  /**
   * Calls `listener` after each change: `set`, `delete` and `clear` (`via: 'local'`), and a state whose
   * `ttl` ran out, when a read finds it gone (`via: 'ttl'`). Setting the same state again is no
   * change. Returns a function that stops the calls.
   */
  onStateChange(listener: StateChangeListener): () => void {
    return this.#listeners.add(listener);
  }

  anyClosed(): boolean {
    if (this.#closedForever > 0) return true;
    for (const key of this.#closed) if (this.peek(key) !== null) return true;
    return false;
  }

  anyFrozen(): boolean {
    for (const key of this.#frozen) if (this.peek(key) !== null) return true;
    return false;
  }

  /**
   * For the guard's metrics: every state lives here, so this process knows them all, at once.
   * `inMaintenance` counts the states other than `active` (the instance's included).
   */
  observe(): StoreObservation {
    let inMaintenance = 0;
    for (const key of this.#closed) if (this.peek(key) !== null) inMaintenance++;
    return { inMaintenance, knowledgeAge: 0, live: true };
  }

  /** `key` is already normalised (the middleware only asks with lower-cased root names). */
  peek(key: string): NamespaceState | null {
    const state = this.#states.get(key);
    if (state === undefined) return null;
    if (state.expiresAt !== undefined && Date.now() >= state.expiresAt.getTime()) {
      this.#forget(key);
      this.#listeners.emit(key, state, null, 'ttl');
      return null;
    }
    return state;
  }

  #forget(key: string): void {
    const state = this.#states.get(key);
    if (state !== undefined && state.state !== 'active' && state.expiresAt === undefined) {
      this.#closedForever--;
    }
    this.#states.delete(key);
    this.#closed.delete(key);
    this.#frozen.delete(key);
  }
}
