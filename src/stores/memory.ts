import { OptionsError } from '../errors.js';
import { isLogger, type Logger, LogLimiter, safeLogger } from '../logger.js';
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
  StateStore,
  StoreObservation,
} from './store.js';

export interface MemoryStateStoreOptions {
  /** A pino-compatible logger, for a failing `onStateChange` listener. Default: silent. */
  readonly logger?: Logger;
}

const NO_LOGGER: Logger = {
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  error: () => undefined,
};

/**
 * States held in this process: the default, for a single process, tests and demos. Every
 * process has its own; use `RedisStateStore` for a fleet.
 */
export class MemoryStateStore implements StateStore {
  readonly #states = new Map<string, NamespaceState>();
  /** The keys whose state closes writes: what `anyClosed()` looks at, however many are open. */
  readonly #closed = new Set<string>();
  /** The keys whose state is `frozen`: what `anyFrozen()` looks at. */
  readonly #frozen = new Set<string>();
  readonly #listeners: ChangeListeners;

  constructor(options: MemoryStateStoreOptions = {}) {
    // Checked here rather than with the guard's option helpers, which import this class.
    const logger: unknown = (options as MemoryStateStoreOptions | null)?.logger;
    if (logger !== undefined && !isLogger(logger)) {
      throw new OptionsError(
        'logger',
        'a pino-compatible logger',
        logger,
        'MemoryStateStore option',
      );
    }
    this.#listeners = new ChangeListeners(
      new LogLimiter(logger === undefined ? NO_LOGGER : safeLogger(logger)),
    );
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
    this.#states.set(key, expiring);
    if (expiring.state === 'active') this.#closed.delete(key);
    else this.#closed.add(key);
    if (expiring.state === 'frozen') this.#frozen.add(key);
    else this.#frozen.delete(key);
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
   * Calls `listener` after each change: `set` and `delete` (`via: 'local'`), and a state whose
   * `ttl` ran out, when a read finds it gone (`via: 'ttl'`). Setting the same state again is no
   * change. Returns a function that stops the calls.
   */
  onStateChange(listener: StateChangeListener): () => void {
    return this.#listeners.add(listener);
  }

  anyClosed(): boolean {
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
    this.#states.delete(key);
    this.#closed.delete(key);
    this.#frozen.delete(key);
  }
}
