import { namespaceKey } from '../request/namespace-name.js';
import {
  checkStateInput,
  checkTtl,
  type NamespaceState,
  type StateInput,
  toState,
} from '../state/values.js';
import type { SetOptions, StateStore } from './store.js';

/**
 * States held in this process: the default, for a single process, tests and demos. Every
 * process has its own; use `RedisStateStore` for a fleet.
 */
export class MemoryStateStore implements StateStore {
  readonly #states = new Map<string, NamespaceState>();
  /** The keys whose state closes writes: what `anyClosed()` looks at, however many are open. */
  readonly #closed = new Set<string>();

  async get(namespace: string): Promise<NamespaceState | null> {
    return this.peek(namespaceKey(namespace));
  }

  /**
   * Accepts `'maintenance'`, `'active'` or `{ state, message?, until?, reason? }`. A raw string
   * that is none of these is kept and read back as maintenance (flagged `unrecognized`), the
   * same rule the Redis store applies to what an operator types. `ttl` (ms) ends the state by
   * itself, like a Redis key TTL.
   */
  async set(
    namespace: string,
    state: StateInput | string,
    options: SetOptions = {},
  ): Promise<void> {
    const key = namespaceKey(namespace);
    const value = typeof state === 'string' ? toState(state) : checkStateInput(state);
    const ttl = checkTtl(options.ttl);
    const expiring =
      ttl === undefined ? value : { ...value, expiresAt: new Date(Date.now() + ttl) };
    this.#states.set(key, Object.freeze(expiring));
    if (expiring.state === 'active') this.#closed.delete(key);
    else this.#closed.add(key);
  }

  async delete(namespace: string): Promise<void> {
    this.#forget(namespaceKey(namespace));
  }

  anyClosed(): boolean {
    for (const key of this.#closed) if (this.peek(key) !== null) return true;
    return false;
  }

  /** `key` is already normalised (the middleware only asks with lower-cased root names). */
  peek(key: string): NamespaceState | null {
    const state = this.#states.get(key);
    if (state === undefined) return null;
    if (state.expiresAt !== undefined && Date.now() >= state.expiresAt.getTime()) {
      this.#forget(key);
      return null;
    }
    return state;
  }

  #forget(key: string): void {
    this.#states.delete(key);
    this.#closed.delete(key);
  }
}
