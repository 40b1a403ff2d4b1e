import { StateValueError } from '../errors.js';

/**
 * Namespace states and how raw values become them. One rule matters above the rest: a value
 * nobody recognises closes the namespace. An operator who typed `maintenace` meant to close it.
 *
 * The values: `active` (writable, as if no state were set), `maintenance` (writes refused),
 * `frozen` (reads refused too; the allowlist still applies) and `report` (nothing refused; what
 * `maintenance` would refuse is logged and counted: a dry run).
 */

/** The key that holds the whole instance's state (GitLab's instance maintenance mode). */
export const INSTANCE = '*';

export type StateValue = 'maintenance' | 'active' | 'frozen' | 'report';

const VALUES: ReadonlySet<string> = new Set<StateValue>([
  'maintenance',
  'active',
  'frozen',
  'report',
]);

export interface NamespaceState {
  readonly state: StateValue;
  /** Shown to clients in the blocked answer. */
  readonly message?: string;
  /** When the maintenance is expected to end; sets `Retry-After`. It does not end it. */
  readonly until?: Date;
  /**
   * Why (`migration`, `archived`...): logged, carried by the JSON answer and the error, and, with
   * the `statusFor` option, the answer's status.
   */
  readonly reason?: string;
  /** The state is in force from this moment; before it, writes pass (a scheduled window). */
  readonly startsAt?: Date;
  /** When the entry ends by itself (a Redis key TTL); sets `Retry-After` when `until` is absent. */
  readonly expiresAt?: Date;
  /** The stored value when it was not understood; the state is then `maintenance`. */
  readonly unrecognized?: string;
}

/** What `store.set()` accepts. */
export type StateInput =
  | StateValue
  | {
      readonly state: StateValue;
      readonly message?: string;
      readonly until?: Date | string;
      readonly reason?: string;
      readonly startsAt?: Date | string;
    };

const MAX_TEXT = 1000;

/**
 * Turns anything a store holds (a string, a parsed JSON object, a `StateInput`) into a state.
 * Never throws: whatever cannot be read is maintenance, flagged as `unrecognized`.
 */
export function toState(value: unknown): NamespaceState {
  if (typeof value === 'string') {
    if (VALUES.has(value)) return { state: value as StateValue };
    const text = value.trim();
    if (VALUES.has(text)) return { state: text as StateValue };
    if (text.startsWith('{')) {
      try {
        return toState(JSON.parse(text) as unknown);
      } catch {
        // fall through: unreadable JSON is an unrecognised value
      }
    }
    return { state: 'maintenance', unrecognized: value.slice(0, 100) };
  }
  if (typeof value !== 'object' || value === null) {
    return { state: 'maintenance', unrecognized: String(value).slice(0, 100) };
  }
  const record = value as Record<string, unknown>;
  const known = typeof record.state === 'string' && VALUES.has(record.state);
  const state = known ? (record.state as StateValue) : 'maintenance';
  const message = text(record.message);
  const reason = text(record.reason);
  const until = date(record.until);
  const startsAt = date(record.startsAt);
  return {
    state,
    ...(message !== undefined && { message }),
    ...(reason !== undefined && { reason }),
    ...(until !== undefined && { until }),
    ...(startsAt !== undefined && { startsAt }),
    ...(!known && { unrecognized: JSON.stringify(record.state ?? null) }),
  };
}

/** Whether `state` is in force at `now` (a scheduled one is not, before its `startsAt`). */
export function inForce(state: NamespaceState, now: number): boolean {
  return state.startsAt === undefined || state.startsAt.getTime() <= now;
}

/**
 * What a store's `get` or `peek` returned, as a state. The stores of this library return states
 * already; another store may hand back a close shape (an ISO string for `until`, a raw value),
 * which is read rather than trusted.
 */
export function asState(value: unknown): NamespaceState | null {
  if (value === null || value === undefined) return null;
  const s = value as Partial<NamespaceState>;
  if (
    typeof s.state === 'string' &&
    VALUES.has(s.state) &&
    (s.until === undefined || s.until instanceof Date) &&
    (s.startsAt === undefined || s.startsAt instanceof Date) &&
    (s.expiresAt === undefined || s.expiresAt instanceof Date)
  ) {
    return value as NamespaceState;
  }
  return toState(value);
}

/** Checks what a caller hands to `store.set()`; a programming error throws here, not later. */
export function checkStateInput(input: unknown): NamespaceState {
  const value =
    typeof input === 'object' && input !== null ? (input as { state?: unknown }).state : input;
  if (typeof value !== 'string' || !VALUES.has(value)) {
    throw new StateValueError(
      "a state must be 'maintenance', 'active', 'frozen', 'report' or { state, message?, until?, reason?, startsAt? }",
      input,
    );
  }
  for (const field of ['until', 'startsAt'] as const) {
    const d = (input as { [k: string]: unknown })[field];
    if (d !== undefined && date(d) === undefined) {
      throw new StateValueError(`\`${field}\` must be a Date or an ISO date string`, d);
    }
  }
  return toState(input);
}

/** Checks `store.set()`'s `ttl` option (milliseconds). */
export function checkTtl(ttl: unknown): number | undefined {
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl <= 0)) {
    throw new StateValueError('`ttl` must be a positive whole number of milliseconds', ttl);
  }
  return ttl;
}

/** The JSON form a store keeps (what an operator would type into `redis-cli SET`). */
export function serializeState(state: NamespaceState): string {
  if (
    state.message === undefined &&
    state.until === undefined &&
    state.reason === undefined &&
    state.startsAt === undefined
  ) {
    return state.state;
  }
  return JSON.stringify({
    state: state.state,
    message: state.message,
    until: state.until?.toISOString(),
    reason: state.reason,
    startsAt: state.startsAt?.toISOString(),
  });
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value.slice(0, MAX_TEXT) : undefined;
}

function date(value: unknown): Date | undefined {
  // A copy: the caller's Date stays theirs, so changing it later cannot move a stored `until`.
  const d =
    value instanceof Date
      ? new Date(value.getTime())
      : typeof value === 'string'
        ? new Date(value)
        : undefined;
  return d !== undefined && Number.isFinite(d.getTime()) ? d : undefined;
}
