import type { RefusalReason } from '../errors.js';
import type { AllowRule } from '../routing/allowlist.js';
import { INSTANCE, inForce, type NamespaceState } from '../state/values.js';

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
   * The request only reads (`GET`, `HEAD`...): then only a `frozen` state refuses it, and nothing
   * it cannot tell or read does.
   */
  readonly read?: boolean;
  /** The time of the decision (ms), for a state's `startsAt`; the caller's clock, not ours. */
  readonly now: number;
  /**
   * The request's route, or `null` where none applies: a programmatic check names a namespace,
   * not a route (so the allowlisted `POST /api/graphql` can still refuse a mutation with
   * `assertWritable`), and a path with dot segments has no route the guard can identify.
   */
  readonly route: Route | null;
  /** The allowlist rule `route` matches, if any; asked only when the write would be refused. */
  readonly allowedBy: (route: Route) => AllowRule | null;
  /**
   * Whether the request may write to `namespace` (`*`: the instance) despite its state (a bypass
   * token for it, or `canBypass`). Asked only for a state that would refuse it, never for a
   * target it cannot tell, a store failure or a lapsed lease.
   */
  readonly bypass?: ((namespace: string) => boolean) | null | undefined;
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
  /** It would have been refused for `block`, but the request may bypass that state. */
  | { readonly admit: true; readonly via: 'bypass'; readonly block: Block }
  /** A `report` state: `maintenance` would have refused it for `block`; logged, not refused. */
  | { readonly admit: true; readonly via: 'report'; readonly block: Block }
  | { readonly admit: false; readonly block: Block };

const OPEN: Verdict = Object.freeze({ admit: true, via: 'open' });

/**
 * What refuses the request, in order of precedence: a target it cannot tell, a state it cannot
 * read, the namespace's own state (its message is the more specific), the instance's, a lapsed
 * lease. The allowlist lets a route through whatever would refuse it; a bypass lifts only a
 * state, and only the state of the namespace it names.
 */
export function verdict<Route>(input: VerdictInput<Route>): Verdict {
  const read = input.read === true;
  const { unknowable } = input;
  if (unknowable !== undefined) {
    if (!read && input.nothingClosed !== true) {
      return refuse(input, {
        reason: unknowable.reason,
        namespace: null,
        detail: unknowable.detail,
      });
    }
    return leaseOr(input, OPEN);
  }
  if (input.readError !== undefined) {
    if (read) return OPEN;
    if (!input.failOpen) {
      return refuse(input, {
        reason: 'store-unavailable',
        namespace: null,
        detail: String(input.readError),
      });
    }
    return leaseOr(input, { admit: true, via: 'store-error-open', error: input.readError });
  }
  let bypassed: Block | null = null;
  let reported: Block | null = null;
  const { namespace } = input;
  for (let i = 0; i < 2; i++) {
    const key = i === 0 ? namespace : INSTANCE;
    const state = i === 0 ? input.own : input.instance;
    if (key === null || state === null) continue;
    const effect = effectOf(state, read, input.now);
    if (effect === null) continue;
    const block = closedBy(key, state);
    if (effect === 'report') {
      reported ??= block;
      continue;
    }
    const rule = input.route === null ? null : input.allowedBy(input.route);
    if (rule !== null) return { admit: true, via: 'allowlist', rule, block };
    if (input.bypass?.(key) === true) {
      bypassed ??= block;
      continue;
    }
    return { admit: false, block };
  }
  const admitted: Verdict =
    bypassed !== null
      ? { admit: true, via: 'bypass', block: bypassed }
      : reported !== null
        ? { admit: true, via: 'report', block: reported }
        : OPEN;
  return leaseOr(input, admitted);
}

/** A write admitted otherwise is still refused while this process's fence lease has lapsed. */
function leaseOr<Route>(input: VerdictInput<Route>, admitted: Verdict): Verdict {
  if (input.holdsLease || input.read === true) return admitted;
  return refuse(input, {
    reason: 'lease-lapsed',
    namespace: input.namespace,
    detail: 'fence heartbeat lapsed',
  });
}

/** Refused for `block`, unless the allowlist lets the route through. */
function refuse<Route>(input: VerdictInput<Route>, block: Block): Verdict {
  const rule = input.route === null ? null : input.allowedBy(input.route);
  return rule === null ? { admit: false, block } : { admit: true, via: 'allowlist', rule, block };
}

/** What `state` does to this request now: refuse it, report it, or nothing. */
function effectOf(state: NamespaceState, read: boolean, now: number): 'refuse' | 'report' | null {
  switch (state.state) {
    case 'active':
      return null;
    case 'frozen':
      return inForce(state, now) ? 'refuse' : null;
    case 'report':
      return read || !inForce(state, now) ? null : 'report';
    default:
      return read || !inForce(state, now) ? null : 'refuse';
  }
}

function closedBy(namespace: string, state: NamespaceState): Block {
  const reason: RefusalReason =
    state.unrecognized !== undefined
      ? 'unrecognized-state'
      : state.state === 'frozen'
        ? 'frozen'
        : namespace === INSTANCE
          ? 'instance-maintenance'
          : 'maintenance';
  return { reason, namespace, state };
}
