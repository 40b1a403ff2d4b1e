import type { IncomingMessage } from 'node:http';
import { INSTANCE, type NamespaceState } from './state.js';
import type { StateStore } from './store.js';

/**
 * Reads states for the middleware and the programmatic checks alike: once per key per request
 * (the memo lives on the request under a Symbol), synchronously when the store can answer from
 * memory, and always together with the instance state, which closes every namespace at once.
 */

export type MaybePromise<T> = T | Promise<T>;

/** The state that closes a write, and whose it is (`*` for the instance). */
export interface Closure {
  readonly namespace: string;
  readonly state: NamespaceState;
}

const MEMO = Symbol('namespace-read-only.memo');

interface MemoHolder {
  [MEMO]?: Map<string, MaybePromise<NamespaceState | null>>;
}

export class StateReader {
  constructor(private readonly store: StateStore) {}

  /**
   * What closes writes to `namespace` (or, with `null`, to paths naming no namespace): the
   * namespace's own maintenance first (its message is the more specific), then the instance's.
   * `null` when writes are open.
   */
  closure(namespace: string | null, req?: IncomingMessage): MaybePromise<Closure | null> {
    const instance = this.read(INSTANCE, req);
    const own = namespace === null ? null : this.read(namespace, req);
    if (!(instance instanceof Promise) && !(own instanceof Promise)) {
      return decide(namespace, own, instance);
    }
    return Promise.all([own, instance]).then(([o, i]) => decide(namespace, o, i));
  }

  private read(key: string, req: IncomingMessage | undefined): MaybePromise<NamespaceState | null> {
    let memo: Map<string, MaybePromise<NamespaceState | null>> | undefined;
    if (req !== undefined) {
      const holder = req as MemoHolder;
      memo = holder[MEMO] ?? new Map();
      holder[MEMO] = memo;
    }
    const seen = memo?.get(key);
    if (seen !== undefined) return seen;
    let value: MaybePromise<NamespaceState | null> | undefined;
    try {
      value = this.store.peek?.(key);
      if (value === undefined) value = this.store.get(key);
    } catch (error) {
      value = Promise.reject(error);
    }
    memo?.set(key, value);
    return value;
  }
}

function decide(
  namespace: string | null,
  own: NamespaceState | null,
  instance: NamespaceState | null,
): Closure | null {
  if (namespace !== null && own !== null && own.state !== 'active')
    return { namespace, state: own };
  if (instance !== null && instance.state !== 'active')
    return { namespace: INSTANCE, state: instance };
  return null;
}
