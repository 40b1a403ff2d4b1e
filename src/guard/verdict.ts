import type { RefusalReason } from '../errors.js';
import type { AllowRule } from '../routing/allowlist.js';
import { INSTANCE, type NamespaceState } from '../state/values.js';

/**
 * The one decision: may this write happen? The middleware and every programmatic check
 * (`isReadOnly`, `assertWritable`, `runWrite`) ask this function and nothing else, so they
 * cannot disagree. Pure: no I/O, no clock, no logging; what it needs to know comes in, a
 * verdict goes out.
 */

/**
 * A target that cannot be trusted: while anything may be in maintenance, the write is refused
 * without reading any state.
 */
export interface Unknowable {
  readonly reason: 'invalid-namespace' | 'unresolvable-id';
  /** Why, for the log (`undecodable`, `dot-segment`, `no resolveId option`...). */
  readonly detail: string;
}

export interface VerdictInput<Route = unknown> {
  /** The root namespace written to; `null` when the path names none (the instance state applies). */
  readonly namespace: string | null;
  /** Set when the target could not be determined safely. */
  readonly unknowable?: Unknowable | undefined;
  /**
   * True when the store knows that no namespace and no instance state is in maintenance: a
   * target that cannot be told then cannot be a closed one, so it is not refused.
   */
  readonly nothingClosed?: boolean;
  /** The namespace's state (`null`: none). */
  readonly own: NamespaceState | null;
  /** The instance's state (`null`: none). */
  readonly instance: NamespaceState | null;
  /** Set when the states could not be read: `own` and `instance` then mean nothing. */
  readonly readError?: unknown;
  /** `onStoreError: 'open'`. */
  readonly failOpen: boolean;
  /** False when this process's migration-fence lease lapsed (always true without the fence). */
  readonly holdsLease: boolean;
  /**
   * The request's route, or `null` where none applies: a programmatic check names a namespace,
   * not a route (so the allowlisted `POST /api/graphql` can still refuse a mutation with
   * `assertWritable`), and a path with dot segments has no route the guard can identify.
   */
  readonly route: Route | null;
  /** The allowlist rule `route` matches, if any; asked only when the write would be refused. */
  readonly allowedBy: (route: Route) => AllowRule | null;
}

/** Why a write is refused, and what the answer needs to say so. */
export interface Block {
  readonly reason: RefusalReason;
  /** Root namespace, `*` for the instance, `null` when it could not be determined. */
  readonly namespace: string | null;
  /** The state that closed the namespace, for the message and `Retry-After`. */
  readonly state?: NamespaceState;
  /** Why a candidate was invalid or a lookup failed, for the log. */
  readonly detail?: string;
}

export type Verdict =
  | { readonly admit: true; readonly via: 'open' }
  /** The state could not be read and `onStoreError` is `'open'`. */
  | { readonly admit: true; readonly via: 'store-error-open'; readonly error: unknown }
  /** It would have been refused for `block`, but its route is allowlisted. */
  | {
      readonly admit: true;
      readonly via: 'allowlist';
      readonly rule: AllowRule;
      readonly block: Block;
    }
  | { readonly admit: false; readonly block: Block };

const OPEN: Verdict = Object.freeze({ admit: true, via: 'open' });

export function verdict<Route>(input: VerdictInput<Route>): Verdict {
  const block = blockOf(input);
  if (block === null) {
    return input.readError !== undefined
      ? { admit: true, via: 'store-error-open', error: input.readError }
      : OPEN;
  }
  const rule = input.route === null ? null : input.allowedBy(input.route);
  return rule === null ? { admit: false, block } : { admit: true, via: 'allowlist', rule, block };
}

/** What refuses the write, in order of precedence, or `null` when nothing does. */
function blockOf<Route>(input: VerdictInput<Route>): Block | null {
  const { namespace, unknowable } = input;
  if (unknowable !== undefined) {
    if (input.nothingClosed !== true) {
      return { reason: unknowable.reason, namespace: null, detail: unknowable.detail };
    }
  } else if (input.readError !== undefined) {
    if (!input.failOpen) {
      return { reason: 'store-unavailable', namespace: null, detail: String(input.readError) };
    }
  } else {
    // The namespace's own maintenance first: its message is the more specific.
    const own = input.own;
    if (namespace !== null && closes(own)) return closedBy(namespace, own);
    const instance = input.instance;
    if (closes(instance)) return closedBy(INSTANCE, instance);
  }
  if (!input.holdsLease) {
    return { reason: 'lease-lapsed', namespace, detail: 'fence heartbeat lapsed' };
  }
  return null;
}

function closes(state: NamespaceState | null): state is NamespaceState {
  return state !== null && state.state !== 'active';
}

function closedBy(namespace: string, state: NamespaceState): Block {
  const reason: RefusalReason =
    state.unrecognized !== undefined
      ? 'unrecognized-state'
      : namespace === INSTANCE
        ? 'instance-maintenance'
        : 'maintenance';
  return { reason, namespace, state };
}
