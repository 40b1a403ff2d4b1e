import type { IncomingMessage } from 'node:http';
import type { StateStore } from '../stores/store.js';
import { withTimeout } from '../timeout.js';
import { asState, type NamespaceState } from './values.js';

/**
 * The first tier: each key is read once per request, synchronously when the store can answer
 * from memory, so the middleware and every check made while serving the request see the same
 * state.
 *
 * Where the memo lives matters on the hot path: it is the one thing a decided write adds to its
 * request. It hangs on the response Express links from `req.res`, under a Symbol (nothing that
 * enumerates or serialises the response sees it): bench/micro.mjs measured a write ~40-60 ns
 * cheaper there than under a Symbol on `res.locals`, which Express creates as a dictionary, and
 * a WeakMap entry ~0.4 µs dearer. A WeakMap only where no `req.res` exists (no Express).
 */

export type MaybePromise<T> = T | Promise<T>;

const MEMO = Symbol('namespace-read-only.memo');

type Value = MaybePromise<NamespaceState | null>;

/**
 * One request's reads. A request asks for two keys (its namespace and `*`) almost always, so
 * the first two live in fields and only a third starts a Map: one small object per write
 * instead of a Map and its entries (about 50 ns a request, measured with bench/micro.mjs).
 */
export class Memo {
  k0: string | undefined = undefined;
  v0: Value | undefined = undefined;
  k1: string | undefined = undefined;
  v1: Value | undefined = undefined;
  rest: Map<string, Value> | null = null;

  get(key: string): Value | undefined {
    if (this.k0 === key) return this.v0;
    if (this.k1 === key) return this.v1;
    return this.rest?.get(key);
  }

  set(key: string, value: Value): void {
    if (this.k0 === undefined) {
      this.k0 = key;
      this.v0 = value;
    } else if (this.k1 === undefined) {
      this.k1 = key;
      this.v1 = value;
    } else {
      this.rest ??= new Map();
      this.rest.set(key, value);
    }
  }
}

interface ExpressRequest {
  res?: { [MEMO]?: Memo };
}

export class RequestMemo {
  readonly #memos = new WeakMap<object, Memo>();

  constructor(
    private readonly store: StateStore,
    /** How long a `get` may take before it counts as failed (ms). */
    private readonly timeoutMs: number,
  ) {}

  /**
   * The state stored under `key` (a normalised key: `acme` or `*`), once per request. Never
   * throws: a store that throws, or does not answer within the guard's `timeout`, gives a
   * rejected promise.
   */
  read(key: string, req: IncomingMessage | undefined): MaybePromise<NamespaceState | null> {
    return this.readIn(req === undefined ? undefined : this.of(req), key);
  }

  /** `read`, in a memo already found with `of` (a write reads two keys: one lookup of the memo). */
  readIn(memo: Memo | undefined, key: string): MaybePromise<NamespaceState | null> {
    const seen = memo?.get(key);
    if (seen !== undefined) return seen;
    let value: Value;
    try {
      const peeked = this.store.peek?.(key);
      value =
        peeked !== undefined
          ? asState(peeked)
          : withTimeout(Promise.resolve(this.store.get(key)), this.timeoutMs).then(asState);
    } catch (error) {
      value = Promise.reject(error);
    }
    memo?.set(key, value);
    return value;
  }

  /**
   * The state under `key` if it can be had without waiting (a read asks this way: it never
   * waits for a store), `undefined` otherwise. A pending read already in the memo counts as not
   * at hand.
   */
  peek(key: string, req: IncomingMessage): NamespaceState | null | undefined {
    const memo = this.of(req);
    const seen = memo.get(key);
    if (seen !== undefined) return seen instanceof Promise ? undefined : seen;
    let value: NamespaceState | null | undefined;
    try {
      const peeked = this.store.peek?.(key);
      value = peeked === undefined ? undefined : asState(peeked);
    } catch {
      value = undefined;
    }
    if (value !== undefined) memo.set(key, value);
    return value;
  }

  /**
   * The request's memo. Created on first use; `fresh` (a write being decided, which carries the
   * memo's fields itself) becomes it when the request has none yet, to save an object per write.
   */
  of(req: IncomingMessage, fresh?: Memo): Memo {
    const res = (req as ExpressRequest).res;
    if (typeof res === 'object' && res !== null) {
      let memo = res[MEMO];
      if (memo === undefined) {
        memo = fresh ?? new Memo();
        res[MEMO] = memo;
      }
      return memo;
    }
    let memo = this.#memos.get(req);
    if (memo === undefined) {
      memo = fresh ?? new Memo();
      this.#memos.set(req, memo);
    }
    return memo;
  }
}
