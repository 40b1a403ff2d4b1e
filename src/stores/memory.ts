import { namespaceKey } from '../namespace-name.js';
import { checkStateInput, type NamespaceState, type StateInput, toState } from '../state.js';
import type { StateStore } from '../store.js';

/**
 * States held in this process: the default, for a single process, tests and demos. Every
 * process has its own; use `RedisStateStore` for a fleet.
 */
export class MemoryStateStore implements StateStore {
  readonly #states = new Map<string, NamespaceState>();

  async get(namespace: string): Promise<NamespaceState | null> {
    return this.peek(namespaceKey(namespace));
  }

  /**
   * Accepts `'maintenance'`, `'active'` or `{ state, message?, until?, reason? }`. A raw string
   * that is none of these is kept and read back as maintenance (flagged `unrecognized`), the
   * same rule the Redis store applies to what an operator types.
   */
  async set(namespace: string, state: StateInput | string): Promise<void> {
    const key = namespaceKey(namespace);
    const value = typeof state === 'string' ? toState(state) : checkStateInput(state);
    this.#states.set(key, Object.freeze(value));
  }

  async delete(namespace: string): Promise<void> {
    this.#states.delete(namespaceKey(namespace));
  }

  /** `key` is already normalised (the middleware only asks with lower-cased root names). */
  peek(key: string): NamespaceState | null {
    return this.#states.get(key) ?? null;
  }
}
