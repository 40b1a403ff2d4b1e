/**
 * Every error this library throws, each with a stable `code` (`ERR_NSRO_*`) to branch on: the
 * message is for people and may change, the code will not.
 */

/** Why a write was refused. Part of the public contract: logged, and carried by the error. */
export type RefusalReason =
  /** The namespace is in maintenance. */
  | 'maintenance'
  /** The whole instance (`*`) is in maintenance. */
  | 'instance-maintenance'
  /** The namespace (or, with `namespace: '*'`, the instance) is frozen: reads are refused too. */
  | 'frozen'
  /** The stored value was not understood; an unknown value closes the namespace. */
  | 'unrecognized-state'
  /** The state could not be read, and `onStoreError` is `'closed'`. */
  | 'store-unavailable'
  /** The migration fence's heartbeat lapsed: no operator's wait counts this process any more. */
  | 'lease-lapsed'
  /** The path names a namespace that cannot be trusted (undecodable, invalid, dot segments). */
  | 'invalid-namespace'
  /** A numeric API id that no `resolveId` could map to a namespace. */
  | 'unresolvable-id'
  /** The guard itself failed (a bug, or a user callback that threw). */
  | 'internal-error';

/** The `code` of a `NamespaceReadOnlyError`, one per reason. */
export const REFUSAL_CODES = {
  maintenance: 'ERR_NSRO_MAINTENANCE',
  'instance-maintenance': 'ERR_NSRO_INSTANCE_MAINTENANCE',
  frozen: 'ERR_NSRO_FROZEN',
  'unrecognized-state': 'ERR_NSRO_UNRECOGNIZED_STATE',
  'store-unavailable': 'ERR_NSRO_STORE_UNAVAILABLE',
  'lease-lapsed': 'ERR_NSRO_LEASE_LAPSED',
  'invalid-namespace': 'ERR_NSRO_INVALID_NAMESPACE',
  'unresolvable-id': 'ERR_NSRO_UNRESOLVABLE_ID',
  'internal-error': 'ERR_NSRO_INTERNAL',
} as const satisfies Record<RefusalReason, `ERR_NSRO_${string}`>;

export type RefusalCode = (typeof REFUSAL_CODES)[RefusalReason];

/** A write was refused by a programmatic check (`assertWritable`, `runWrite`). */
export class NamespaceReadOnlyError extends Error {
  /** One stable code per refusal (`ERR_NSRO_MAINTENANCE`...): what to branch on. */
  readonly code: RefusalCode;
  /** Why the write was refused, in words (`maintenance`, `store-unavailable`...). */
  readonly refusal: RefusalReason;
  /** The state's own reason (`archived`, `migration`), when the state carries one. */
  readonly reason: string | undefined;
  /** The HTTP status the blocked answer uses: 503, or what `statusFor` maps `reason` to. */
  readonly status: number;
  /** The root namespace, `*` for the instance, or `null` when it could not be determined. */
  readonly namespace: string | null;
  /** Seconds a client should wait before retrying; `undefined` when the status is not 503. */
  readonly retryAfter: number | undefined;

  constructor(
    message: string,
    refusal: RefusalReason,
    namespace: string | null,
    retryAfter: number | undefined,
    details: { readonly reason?: string | undefined; readonly status?: number } = {},
  ) {
    super(message);
    this.name = 'NamespaceReadOnlyError';
    this.refusal = refusal;
    this.code = REFUSAL_CODES[refusal];
    this.reason = details.reason;
    this.status = details.status ?? 503;
    this.namespace = namespace;
    this.retryAfter = retryAfter;
  }
}

/** A misconfigured option, thrown when the guard or a store is created. */
export class OptionsError extends TypeError {
  readonly code = 'ERR_NSRO_OPTION';
  /** The option's path, e.g. `retryAfter` or `allowlist[2].path`. */
  readonly option: string;

  constructor(option: string, expected: string, received: unknown, owner = 'option') {
    super(
      `namespace-read-only: ${owner} \`${option}\` must be ${expected}; received ${describe(received)}`,
    );
    this.name = 'OptionsError';
    this.option = option;
  }
}

/** A name no request can resolve to, given where a namespace is expected (`store.set('a b')`). */
export class NamespaceNameError extends TypeError {
  readonly code = 'ERR_NSRO_NAMESPACE_NAME';

  constructor(received: unknown) {
    super(
      `namespace-read-only: ${describe(received)} is not a namespace name (expected e.g. 'acme', 'acme/team' or '*' for the instance)`,
    );
    this.name = 'NamespaceNameError';
  }
}

/** A state or a `ttl` handed to `store.set()` that cannot be stored. */
export class StateValueError extends TypeError {
  readonly code = 'ERR_NSRO_STATE_VALUE';

  constructor(what: string, received: unknown) {
    super(`namespace-read-only: ${what}; received ${describe(received)}`);
    this.name = 'StateValueError';
  }
}

/** The store did not answer within its time budget. */
export class StoreTimeoutError extends Error {
  readonly code = 'ERR_NSRO_STORE_TIMEOUT';

  constructor(ms: number) {
    super(`namespace-read-only: store did not answer within ${ms} ms`);
    this.name = 'StoreTimeoutError';
  }
}

/** The store cannot give a trustworthy answer right now (failing, or changing under the read). */
export class StoreReadError extends Error {
  readonly code = 'ERR_NSRO_STORE_READ';

  constructor(message: string, options?: { cause?: unknown }) {
    super(`namespace-read-only: ${message}`, options);
    this.name = 'StoreReadError';
  }
}

/** A Redis transaction (MULTI/EXEC) was aborted or one of its commands failed. */
export class RedisTransactionError extends Error {
  readonly code = 'ERR_NSRO_REDIS_TRANSACTION';

  constructor(options?: { cause?: unknown }) {
    const cause = options?.cause;
    super(
      cause === undefined
        ? 'namespace-read-only: Redis transaction aborted'
        : `namespace-read-only: Redis transaction failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      options,
    );
    this.name = 'RedisTransactionError';
  }
}

/**
 * On a Redis Cluster only, where the audit stream lives in another slot than the state key: the
 * change was made (and announced), but its audit entry could not be appended.
 */
export class AuditWriteError extends Error {
  readonly code = 'ERR_NSRO_AUDIT_WRITE';
  readonly namespace: string;

  constructor(namespace: string, options?: { cause?: unknown }) {
    const cause = options?.cause;
    super(
      `namespace-read-only: the state of "${namespace}" was changed, but its audit entry could not be written${cause instanceof Error ? `: ${cause.message}` : ''}`,
      options,
    );
    this.name = 'AuditWriteError';
    this.namespace = namespace;
  }
}

/** `wait()` on a namespace that is not in maintenance: there is nothing to wait for. */
export class NotInMaintenanceError extends Error {
  readonly code = 'ERR_NSRO_NOT_IN_MAINTENANCE';
  readonly namespace: string;

  constructor(namespace: string) {
    super(`namespace-read-only: "${namespace}" is not in maintenance; nothing to wait for`);
    this.name = 'NotInMaintenanceError';
    this.namespace = namespace;
  }
}

/** What a live process reports of itself in the migration fence. */
export interface ProcessInfo {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: string;
  /** Admitted writes still running, per namespace (`*`: all of them), at the last heartbeat. */
  readonly inflight: Record<string, number>;
}

/** The wait ran out of time; `pending` names who had not acknowledged, with their writes in flight. */
export class FenceTimeoutError extends Error {
  readonly code = 'ERR_NSRO_FENCE_TIMEOUT';
  readonly namespace: string;
  readonly pending: readonly (ProcessInfo & { readonly inflightHere: number })[];

  constructor(namespace: string, timeout: number, pending: FenceTimeoutError['pending']) {
    const who = pending
      .map((p) => `${p.host} pid ${p.pid} (${p.id}): ${p.inflightHere} write(s) in flight`)
      .join('; ');
    super(
      `namespace-read-only: ${pending.length} process(es) did not acknowledge "${namespace}" within ${timeout} ms: ${who}`,
    );
    this.name = 'FenceTimeoutError';
    this.namespace = namespace;
    this.pending = pending;
  }
}

/** Bad command-line input: nothing was written (exit code 2). */
export class UsageError extends Error {
  readonly code = 'ERR_NSRO_USAGE';

  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The CLI could not reach Redis (exit code 1). */
export class RedisUnreachableError extends Error {
  readonly code = 'ERR_NSRO_REDIS_UNREACHABLE';

  constructor(message: string) {
    super(message);
    this.name = 'RedisUnreachableError';
  }
}

/**
 * A received value that must not appear in an error message (a secret): `describe()` shows only
 * this description of it, e.g. "a string of 12 characters (not shown)".
 */
export class Redacted {
  readonly description: string;

  constructor(description: string) {
    this.description = description;
  }
}

/** A short, safe rendering of a received value for an error message. */
export function describe(value: unknown): string {
  if (value instanceof Redacted) return value.description;
  if (typeof value === 'string')
    return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}
