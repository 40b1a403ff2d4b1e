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
 * An interface, with its two operations as functions, so that the pipeline's pending write can
 * carry the slots itself without inheriting them (see `Pending`).
 */
export interface Memo {
  k0: string | undefined;
  v0: Value | undefined;
  k1: string | undefined;
  v1: Value | undefined;
  rest: Map<string, Value> | null;
}

function memoGet(memo: Memo, key: string): Value | undefined {
  if (memo.k0 === key) return memo.v0;
  if (memo.k1 === key) return memo.v1;
  return memo.rest?.get(key);
}

function memoSet(memo: Memo, key: string, value: Value): void {
  if (memo.k0 === undefined) {
    memo.k0 = key;
    memo.v0 = value;
  } else if (memo.k1 === undefined) {
    memo.k1 = key;
    memo.v1 = value;
  } else {
    memo.rest ??= new Map();
    memo.rest.set(key, value);
  }
}

/** An empty memo, for a request that has none and no pending write to carry one. */
function newMemo(): Memo {
  return { k0: undefined, v0: undefined, k1: undefined, v1: undefined, rest: null };
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
    const seen = memo === undefined ? undefined : memoGet(memo, key);
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
    if (memo !== undefined) memoSet(memo, key, value);
    return value;
  }

  /**
   * The state under `key` if it can be had without waiting (a read asks this way: it never
   * waits for a store), `undefined` otherwise. A pending read already in the memo counts as not
   * at hand.
   */
  peek(key: string, req: IncomingMessage): NamespaceState | null | undefined {
    const memo = this.of(req);
    const seen = memoGet(memo, key);
    if (seen !== undefined) return seen instanceof Promise ? undefined : seen;
    let value: NamespaceState | null | undefined;
    try {
      const peeked = this.store.peek?.(key);
      value = peeked === undefined ? undefined : asState(peeked);
    } catch {
      value = undefined;
    }
    if (value !== undefined) memoSet(memo, key, value);
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
        memo = fresh ?? newMemo();
        res[MEMO] = memo;
      }
      return memo;
    }
    let memo = this.#memos.get(req);
    if (memo === undefined) {
      memo = fresh ?? newMemo();
      this.#memos.set(req, memo);
    }
    return memo;
  }
}
