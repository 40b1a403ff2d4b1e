import type { ServerResponse } from 'node:http';
import { INSTANCE } from '../state/values.js';

/**
 * Writes this process admitted and that have not finished yet, per root namespace. The
 * migration fence waits for these to drain before it tells the operator a namespace is quiet.
 * Counting is in memory; nothing here touches Redis.
 */
export class InflightWrites {
  readonly #counts = new Map<string, number>();
  #total = 0;
  readonly #waiters = new Set<{ namespace: string; resolve: () => void }>();

  /** Counts an admitted HTTP write until its response is over: finished, or its connection closed. */
  admit(namespace: string | null, res: ServerResponse): void {
    // Something that is not a Node response (a direct call in a benchmark) has no end to wait for.
    if (typeof res.on !== 'function') return;
    // Already over (the client hung up while the check was reading): 'close' will not come again.
    if (res.destroyed || res.writableFinished) return;
    // 'close' follows 'finish' on every response (and stands alone when the connection drops),
    // so one listener covers both; `leave` is idempotent.
    res.on('close', this.enter(namespace));
  }

  /** Counts a write in progress; call the returned function exactly once when it is over. */
  enter(namespace: string | null): () => void {
    const key = namespace ?? INSTANCE;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    this.#total++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const n = (this.#counts.get(key) ?? 1) - 1;
      if (n === 0) this.#counts.delete(key);
      else this.#counts.set(key, n);
      this.#total--;
      this.#wake();
    };
  }

  /** Writes in flight to `namespace`; for `*`, every write this process admitted. */
  count(namespace: string): number {
    return namespace === INSTANCE ? this.#total : (this.#counts.get(namespace) ?? 0);
  }

  /** Resolves once `count(namespace)` is zero. */
  drained(namespace: string): Promise<void> {
    if (this.count(namespace) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.add({ namespace, resolve });
    });
  }

  /** `{ acme: 2, '*': 3 }`: per namespace, plus the total under `*`. */
  snapshot(): Record<string, number> {
    return { ...Object.fromEntries(this.#counts), [INSTANCE]: this.#total };
  }

  #wake(): void {
    for (const waiter of this.#waiters) {
      if (this.count(waiter.namespace) === 0) {
        this.#waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }
}
