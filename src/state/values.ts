import { StateValueError } from '../errors.js';

/**
 * Namespace states and how raw values become them. One rule matters above the rest: a value
 * nobody recognises closes the namespace. An operator who typed `maintenace` meant to close it.
 */

/** The key that holds the whole instance's state (GitLab's instance maintenance mode). */
export const INSTANCE = '*';

export interface NamespaceState {
  readonly state: 'maintenance' | 'active';
  /** Shown to clients in the blocked answer. */
  readonly message?: string;
  /** When the maintenance is expected to end; sets `Retry-After`. It does not end it. */
  readonly until?: Date;
  /** Why, for operators (e.g. `migration`); logged, never shown to clients. */
  readonly reason?: string;
  /** When the entry ends by itself (a Redis key TTL); sets `Retry-After` when `until` is absent. */
  readonly expiresAt?: Date;
  /** The stored value when it was not understood; the state is then `maintenance`. */
  readonly unrecognized?: string;
}

/** What `store.set()` accepts. */
export type StateInput =
  | 'maintenance'
  | 'active'
  | {
      readonly state: 'maintenance' | 'active';
      readonly message?: string;
      readonly until?: Date | string;
      readonly reason?: string;
    };

const MAX_TEXT = 1000;

/**
 * Turns anything a store holds (a string, a parsed JSON object, a `StateInput`) into a state.
 * Never throws: whatever cannot be read is maintenance, flagged as `unrecognized`.
 */
export function toState(value: unknown): NamespaceState {
  if (value === 'active' || value === 'maintenance') return { state: value };
  if (typeof value === 'string') {
    const text = value.trim();
    if (text === 'active' || text === 'maintenance') return { state: text };
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
  const state = record.state === 'active' ? 'active' : 'maintenance';
  const message = text(record.message);
  const reason = text(record.reason);
  const until = date(record.until);
  return {
    state,
    ...(message !== undefined && { message }),
    ...(reason !== undefined && { reason }),
    ...(until !== undefined && { until }),
    ...(record.state !== 'active' &&
      record.state !== 'maintenance' && { unrecognized: JSON.stringify(record.state ?? null) }),
  };
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
    (s.state === 'maintenance' || s.state === 'active') &&
    (s.until === undefined || s.until instanceof Date) &&
    (s.expiresAt === undefined || s.expiresAt instanceof Date)
  ) {
    return value as NamespaceState;
  }
  return toState(value);
}

/** Checks what a caller hands to `store.set()`; a programming error throws here, not later. */
export function checkStateInput(input: unknown): NamespaceState {
  const valid =
    input === 'active' ||
    input === 'maintenance' ||
    (typeof input === 'object' &&
      input !== null &&
      ((input as { state?: unknown }).state === 'active' ||
        (input as { state?: unknown }).state === 'maintenance'));
  if (!valid) {
    throw new StateValueError(
      "a state must be 'maintenance', 'active' or { state, message?, until?, reason? }",
      input,
    );
  }
  const until = (input as { until?: unknown }).until;
  if (until !== undefined && date(until) === undefined) {
    throw new StateValueError('`until` must be a Date or an ISO date string', until);
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
  if (state.message === undefined && state.until === undefined && state.reason === undefined) {
    return state.state;
  }
  return JSON.stringify({
    state: state.state,
    message: state.message,
    until: state.until?.toISOString(),
    reason: state.reason,
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
