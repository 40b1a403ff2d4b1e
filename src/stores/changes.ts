import { StateValueError } from '../errors.js';
import type { LogLimiter } from '../logger.js';
import type { NamespaceState } from '../state/values.js';
import type { ChangeOptions, StateChange, StateChangeListener, StateChangeVia } from './store.js';

/**
 * What both stores share about changes: the `actor` and `reason` a change is made with (checked
 * like a state), and `onStateChange` listeners, called safely and only for a real change.
 */

const MAX_ACTOR = 200;
const MAX_REASON = 1000;

/**
 * Two reads of one key with a TTL give end times that differ by the reads' latency: an end that
 * moved by less than this is the same end, one that moved by more (`EXPIRE`, a new `--for`) is a
 * change.
 */
const EXPIRY_TOLERANCE_MS = 1000;

/** `actor` and `reason` of a set or delete, checked; a programming error throws here. */
export function checkChangeOptions(options: ChangeOptions): {
  actor: string | undefined;
  reason: string | undefined;
} {
  const { actor, reason } = options;
  if (actor !== undefined && (typeof actor !== 'string' || actor.trim().length === 0)) {
    throw new StateValueError('`actor` must be a non-empty string', actor);
  }
  if (reason !== undefined && typeof reason !== 'string') {
    throw new StateValueError('`reason` must be a string', reason);
  }
  return {
    actor: actor?.slice(0, MAX_ACTOR),
    reason: reason === undefined || reason.length === 0 ? undefined : reason.slice(0, MAX_REASON),
  };
}

/**
 * Whether two states are the same for a listener: every field equal (dates by time), except a
 * TTL's end, which may differ by read latency.
 */
export function sameState(a: NamespaceState | null, b: NamespaceState | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(x), ...Object.keys(y)])) {
    const u = x[key];
    const v = y[key];
    if (u instanceof Date && v instanceof Date) {
      const moved = Math.abs(u.getTime() - v.getTime());
      if (key === 'expiresAt' ? moved > EXPIRY_TOLERANCE_MS : moved !== 0) return false;
    } else if (u !== v) {
      return false;
    }
  }
  return true;
}

/** The listeners of one store: added, removed, and called so that none can break it. */
export class ChangeListeners {
  readonly #listeners = new Set<StateChangeListener>();

  /** `errors`: where a throwing listener is reported (at most one line per 10 s). */
  constructor(private readonly errors: LogLimiter) {}

  add(listener: StateChangeListener): () => void {
    if (typeof listener !== 'function') {
      throw new TypeError('namespace-read-only: onStateChange takes a function');
    }
    // A wrapper, so adding the same function twice gives two independent subscriptions.
    const entry: StateChangeListener = (change) => listener(change);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  get size(): number {
    return this.#listeners.size;
  }

  /** Calls every listener with `change`, unless `from` and `to` are the same state. */
  emit(
    namespace: string,
    from: NamespaceState | null,
    to: NamespaceState | null,
    via: StateChangeVia,
  ): void {
    if (this.#listeners.size === 0 || sameState(from, to)) return;
    const change: StateChange = Object.freeze({ namespace, from, to, via });
    for (const listener of [...this.#listeners]) {
      try {
        const result: unknown = listener(change);
        if (typeof (result as PromiseLike<unknown> | null)?.then === 'function') {
          (result as PromiseLike<unknown>).then(undefined, (error: unknown) =>
            this.#failed(error, change),
          );
        }
      } catch (error) {
        this.#failed(error, change);
      }
    }
  }

  #failed(error: unknown, change: StateChange): void {
    this.errors.error(
      'state-change-listener',
      { err: error, namespace: change.namespace, via: change.via },
      'namespace-read-only: an onStateChange listener failed; ignored',
    );
  }
}

/**
 * What a process that learns states from several places (a complete copy, a per-key cache, its
 * own writes) last knew of each key, so that a change is reported once, whichever place learns
 * of it first, and a re-read of the same value is not a change. Only keys with a state are
 * kept: once the process has had complete knowledge, a key absent here had none.
 */
export class KnownStates {
  /** The last state known per key, when it was not `null`; oldest first. */
  readonly #known = new Map<string, NamespaceState>();
  /** Set once every state has been loaded: from then on, absent here means no state. */
  #complete = false;

  constructor(
    private readonly listeners: ChangeListeners,
    /** Most keys kept; past that the oldest is forgotten (and a change to it reported as from `null`). */
    private readonly max: number,
  ) {}

  /**
   * The process now knows `key` is `to`. `knownBefore`: the caller held an earlier value of its
   * own (the cache's previous entry), so even before complete knowledge this is a change rather
   * than a first read.
   */
  learned(key: string, to: NamespaceState | null, via: StateChangeVia, knownBefore = false): void {
    const had = this.#known.has(key);
    const from = this.#known.get(key) ?? null;
    this.#remember(key, to);
    // Before complete knowledge, a key read for the first time is news, not a change.
    if (!had && !knownBefore && !this.#complete) return;
    this.listeners.emit(key, from, to, via);
  }

  /** A change this process made itself, with the value it replaced (read in the same step). */
  made(key: string, from: NamespaceState | null, to: NamespaceState | null): void {
    this.#remember(key, to);
    this.listeners.emit(key, from, to, 'local');
  }

  /** Every state, just loaded: keys known here and absent from `states` have none any more. */
  loaded(states: Iterable<readonly [string, NamespaceState | null]>): void {
    const seen = new Set<string>();
    for (const [key, state] of states) {
      seen.add(key);
      this.learned(key, state, 'load');
    }
    for (const key of [...this.#known.keys()]) if (!seen.has(key)) this.learned(key, null, 'load');
    this.#complete = true;
  }

  #remember(key: string, state: NamespaceState | null): void {
    this.#known.delete(key);
    if (state === null) return;
    this.#known.set(key, state);
    if (this.#known.size > this.max) {
      const oldest = this.#known.keys().next();
      if (oldest.done !== true) this.#known.delete(oldest.value);
    }
  }
}
