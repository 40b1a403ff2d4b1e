import type { InflightWrites } from '../fence/inflight.js';
import type { NamespaceState, StateInput } from '../state/values.js';

/** The interface every state store implements, and what a guard asks of one. */

/**
 * Where namespace states live. Keys are root namespaces, lower-cased (`acme`), or `*` for the
 * whole instance; methods accept any spelling (`'Acme/Team'`) and normalise it.
 */
export interface StateStore {
  /** The state, or `null` when none is set (writable). */
  get(namespace: string): Promise<NamespaceState | null>;
  set(namespace: string, state: StateInput, options?: SetOptions): Promise<void>;
  /** Back to writable. */
  delete(namespace: string, options?: DeleteOptions): Promise<void>;
  /**
   * The state when the store can answer from memory right now, `undefined` when it must ask
   * `get()`. Lets the middleware answer synchronously on the hot path. Called only with
   * normalised keys (`acme`, `*`).
   */
  peek?(namespace: string): NamespaceState | null | undefined;
  /**
   * Whether any namespace, or the instance, is in maintenance right now: `true` or `false` when
   * the store knows every state, a promise while it is still learning them (the first sync),
   * `undefined` when it cannot know. The guard refuses a write whose target it cannot tell only
   * while this is not `false`, so a store that knows nothing is closed makes the guard refuse
   * nothing.
   */
  anyClosed?(): boolean | Promise<boolean | undefined> | undefined;
  /**
   * Whether any state that refuses reads (`frozen`) is set: lets the guard pass reads without
   * looking at them while none is. `undefined` (or absent) when the store cannot say at once.
   */
  anyFrozen?(): boolean | undefined;
  /**
   * Releases timers and connections the store opened itself. The store's owner calls it: a
   * guard never closes a store it was given, since other guards may share it.
   */
  close?(): Promise<void>;
  /**
   * Called once by each guard created with `fence: true`: a store that supports the migration fence
   * registers the process and acknowledges fences once `inflight` (the guard's admitted writes)
   * has drained.
   */
  register?(inflight: InflightWrites): WriterRegistration;
  /**
   * Calls `listener` whenever this process learns that a state changed, however the change was
   * made; returns a function that stops the calls. A listener that throws (or rejects) is logged
   * and ignored: it never breaks the store.
   */
  onStateChange?(listener: StateChangeListener): () => void;
  /**
   * What the guard's metrics report about the store, asked only when they are scraped (never on
   * the request path). Without it the store's gauges are NaN.
   */
  observe?(): StoreObservation;
}

/** One namespace with a state, as both stores' `list()` return it. */
export interface StateEntry {
  /** The normalised key: a lower-cased root namespace, or `*` for the instance. */
  readonly namespace: string;
  readonly state: NamespaceState;
}

/** A store's account of its own knowledge, for the `metrics` gauges. */
export interface StoreObservation {
  /**
   * Namespaces (and the instance, `*`) whose state is not `active`, as this process knows them;
   * `undefined` when it cannot know them all (the Redis store outside its complete mode).
   */
  readonly inMaintenance: number | undefined;
  /** How old this process's knowledge of the states is (ms); `undefined` when unknown. */
  readonly knowledgeAge: number | undefined;
  /**
   * Whether every change reaches this process as it is made: the Redis store's push path is
   * proven (complete mode), or the states live in this process (memory store).
   */
  readonly live: boolean;
  /** The store's own failures so far, by kind (a fixed, small set of kinds). */
  readonly errors?: Readonly<Record<string, number>>;
}

export interface WriterRegistration {
  /**
   * False when this process may have dropped out of the fence's live set (its heartbeat could
   * not be renewed in time): it must then admit no write, since no operator waits for it.
   */
  holdsLease(): boolean;
  /** The guard is closing: stop counting its writes (and, for the last guard, stop beating). */
  release(): Promise<void>;
}

/** Who made a change and why: what the Redis store's audit stream records. */
export interface ChangeOptions {
  /**
   * Who made the change (a person, a job), up to 200 characters. Default `store@<hostname>:<pid>`;
   * the CLI passes `<os user>@<hostname> (nsro)` or its `--actor`.
   */
  readonly actor?: string;
  /** Why, for the audit trail, when the state itself carries no `reason` (up to 1,000 characters). */
  readonly reason?: string;
}

export interface SetOptions extends ChangeOptions {
  /** Milliseconds after which the state ends by itself (a Redis key TTL). */
  readonly ttl?: number;
}

export type DeleteOptions = ChangeOptions;

/** How a process learned of a change. */
export type StateChangeVia =
  /** Announced (keyspace notification or `<prefix>changes`), then read. */
  | 'push'
  /** Read straight from Redis for the migration fence. */
  | 'read'
  /** Found by loading every state (regaining complete knowledge, or the periodic check). */
  | 'load'
  /** Made by this process, through this store. */
  | 'local'
  /** Re-read per key once its cached value was too old (or ran out). */
  | 'ttl'
  /** Read per key for the first time since the cache dropped it. */
  | 'miss';

export interface StateChange {
  /** The normalised key: a lower-cased root namespace, or `*` for the instance. */
  readonly namespace: string;
  /** What this process knew before; `null`: no state (writable). */
  readonly from: NamespaceState | null;
  /** What it knows now; `null`: no state (writable). */
  readonly to: NamespaceState | null;
  readonly via: StateChangeVia;
}

export type StateChangeListener = (change: StateChange) => void;
