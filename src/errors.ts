/** Errors this library throws. Each carries a stable `code` callers can branch on. */

/** A misconfigured option, thrown by `namespaceReadOnly()` when the guard is created. */
export class OptionsError extends TypeError {
  readonly code = 'ERR_NSRO_OPTION';
  readonly option: string;

  constructor(option: string, expected: string, received: unknown) {
    super(
      `namespace-read-only: option \`${option}\` must be ${expected}; received ${describe(received)}`,
    );
    this.name = 'OptionsError';
    this.option = option;
  }
}

/** A write was refused because its namespace (or the whole instance) is read-only. */
export class NamespaceReadOnlyError extends Error {
  readonly code = 'NAMESPACE_MAINTENANCE';
  /** The HTTP status the blocked answer uses. */
  readonly status = 503;
  /** The root namespace, `*` for the instance, or `null` when it could not be determined. */
  readonly namespace: string | null;
  /** Seconds a client should wait before retrying. */
  readonly retryAfter: number;

  constructor(message: string, namespace: string | null, retryAfter: number) {
    super(message);
    this.name = 'NamespaceReadOnlyError';
    this.namespace = namespace;
    this.retryAfter = retryAfter;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}
