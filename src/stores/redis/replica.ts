import { type NamespaceState, toState } from '../../state/values.js';

/**
 * This process's copy of every state under the prefix: the namespaces not in the default
 * state, which are few. Pure data, no I/O: sync.ts fills it and keeps it current. With it,
 * every decision is a local, synchronous lookup, for a namespace seen before or never: one that
 * is absent here is writable.
 */

/** Distinct raw values remembered as parsed states; thousands of `maintenance` keys share one. */
const MAX_INTERNED = 1000;

export class Replica {
  readonly #states = new Map<string, NamespaceState>();
  /** The keys whose state closes writes and can run out: what `anyClosed()` iterates. */
  readonly #closed = new Set<string>();
  /** How many keys have a state that closes writes and no TTL. */
  #closedForever = 0;
  /** The keys whose state is `frozen`. */
  readonly #frozen = new Set<string>();
  readonly #interned = new Map<string, NamespaceState>();

  /** The state of `key`, `null` when it has none or its key TTL has run out. */
  get(key: string): NamespaceState | null {
    const state = this.#states.get(key);
    if (state === undefined) return null;
    // The clock is read only for a state that can run out: the hot path rarely meets one.
    if (state.expiresAt !== undefined && Date.now() >= state.expiresAt.getTime()) {
      this.delete(key);
      return null;
    }
    return state;
  }

  /** Whether any key's state closes writes right now. Asked for every write: no clock if avoidable. */
  anyClosed(): boolean {
    if (this.#closedForever > 0) return true;
    for (const key of this.#closed) if (this.get(key) !== null) return true;
    return false;
  }

  /** How many keys have a state other than `active` right now (for the metrics). */
  closedCount(): number {
    let n = this.#closedForever;
    for (const key of this.#closed) if (this.get(key) !== null) n++;
    return n;
  }

  /** Whether any key's state refuses reads (`frozen`) right now. */
  anyFrozen(): boolean {
    for (const key of this.#frozen) if (this.get(key) !== null) return true;
    return false;
  }

  /** Sets `key` from a raw Redis value and its PTTL (`null`: the key does not exist). */
  apply(key: string, value: string | null, pttl: number, now = Date.now()): NamespaceState | null {
    if (value === null) {
      this.delete(key);
      return null;
    }
    const state = this.#parse(value, pttl, now);
    this.delete(key);
    this.#states.set(key, state);
    if (state.state !== 'active') {
      if (state.expiresAt === undefined) this.#closedForever++;
      else this.#closed.add(key);
    }
    if (state.state === 'frozen') this.#frozen.add(key);
    return state;
  }

  delete(key: string): void {
    const state = this.#states.get(key);
    if (state === undefined) return;
    this.#states.delete(key);
    if (state.state !== 'active' && state.expiresAt === undefined) this.#closedForever--;
    else this.#closed.delete(key);
    this.#frozen.delete(key);
  }

  /** Replaces the whole content; returns the keys whose state changed, for the log. */
  replace(entries: Iterable<readonly [string, string | null, number]>, now = Date.now()): string[] {
    const seen = new Set<string>();
    const changed: string[] = [];
    for (const [key, value, pttl] of entries) {
      seen.add(key);
      const before = this.#states.get(key);
      const after = this.apply(key, value, pttl, now);
      if (before === undefined || before.state !== after?.state) changed.push(key);
    }
    for (const key of [...this.#states.keys()]) {
      if (!seen.has(key)) {
        this.delete(key);
        changed.push(key);
      }
    }
    return changed;
  }

  has(key: string): boolean {
    return this.#states.has(key);
  }

  keys(): IterableIterator<string> {
    return this.#states.keys();
  }

  get size(): number {
    return this.#states.size;
  }

  clear(): void {
    this.#states.clear();
    this.#closed.clear();
    this.#frozen.clear();
    this.#closedForever = 0;
  }

  #parse(value: string, pttl: number, now: number): NamespaceState {
    let state = this.#interned.get(value);
    if (state === undefined) {
      state = Object.freeze(toState(value));
      if (this.#interned.size >= MAX_INTERNED) this.#interned.clear();
      this.#interned.set(value, state);
    }
    return pttl > 0 ? Object.freeze({ ...state, expiresAt: new Date(now + pttl) }) : state;
  }
}
