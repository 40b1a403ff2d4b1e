import { REFUSAL_CODES, type RefusalCode } from 'namespace-read-only';

/**
 * Telling the guard's refusal from the application's own answer, in a test's response. The
 * guard's refusal is 503, 403 or 423 with `X-Namespace-Read-Only`; an admitted response that the
 * `signal` option marks carries that header too, but always with `X-Namespace-Read-Only-State`,
 * which a refusal never has. A JSON refusal carries one of the `ERR_NSRO_*` refusal codes; a JSON
 * body with any other `code` is the application's. No test framework is imported: a mismatch
 * throws a `GuardExpectationError`, which vitest, jest and `node:test` all report as a failure.
 */

/** What the helpers read of a response: supertest's has it, as has light-my-request's. */
export interface ResponseLike {
  readonly status?: number;
  readonly statusCode?: number;
  readonly headers: Readonly<Record<string, string | readonly string[] | number | undefined>>;
  /** The parsed body (supertest parses JSON), or the body as a string. */
  readonly body?: unknown;
  /** The raw body (supertest). */
  readonly text?: unknown;
}

/** The guard's refusal, as read from its answer. */
export interface GuardRefusal {
  /** 503, or 403 or 423 through the `statusFor` option. */
  readonly status: number;
  /** The root namespace, `'*'` for the instance, `null` when the guard could not tell it. */
  readonly namespace: string | null;
  /** `ERR_NSRO_*`; `undefined` when the answer is not JSON (an HTML page, text, `HEAD`). */
  readonly code: RefusalCode | undefined;
  /** The state's `reason`, when the JSON answer carries one. */
  readonly reason: string | undefined;
  /** The message of the JSON answer. */
  readonly message: string | undefined;
  /** `Retry-After` in seconds; `undefined` when absent (a status other than 503). */
  readonly retryAfter: number | undefined;
}

/** What `expectRefusedByGuard` checks besides the refusal itself; each field is optional. */
export interface RefusalExpectation {
  readonly namespace?: string | null;
  readonly code?: RefusalCode;
  readonly status?: 403 | 423 | 503;
  readonly reason?: string;
}

/** An expectation about the guard's answer that the response does not meet. */
export class GuardExpectationError extends Error {
  readonly code = 'ERR_NSRO_GUARD_EXPECTATION';

  constructor(message: string) {
    super(`namespace-read-only/testing: ${message}`);
    this.name = 'GuardExpectationError';
  }
}

const STATUSES: ReadonlySet<number> = new Set([403, 423, 503]);
const CODES: ReadonlySet<unknown> = new Set(Object.values(REFUSAL_CODES));

/** The guard's refusal, or `null` when the response is not one. */
export function guardRefusal(res: ResponseLike): GuardRefusal | null {
  const read = readResponse(res);
  return 'refusal' in read ? read.refusal : null;
}

/** Whether the guard refused the request (rather than the app answering it, however it did). */
export function isRefusedByGuard(res: ResponseLike): boolean {
  return guardRefusal(res) !== null;
}

/**
 * Throws unless the guard refused the request, and did so as `expected` says. Returns the refusal,
 * for further checks.
 */
export function expectRefusedByGuard(
  res: ResponseLike,
  expected: RefusalExpectation = {},
): GuardRefusal {
  const read = readResponse(res);
  if (!('refusal' in read)) {
    throw new GuardExpectationError(
      `expected the guard to refuse the request, but ${read.not}; the response: ${describe(res)}`,
    );
  }
  const { refusal } = read;
  for (const field of ['status', 'namespace', 'code', 'reason'] as const) {
    const want = expected[field];
    if (want === undefined || refusal[field] === want) continue;
    const hint =
      field === 'code' && refusal.code === undefined
        ? ' (the answer is not JSON, so it carries no code: send the request with `Accept: application/json`)'
        : '';
    throw new GuardExpectationError(
      `the guard refused the request, but with ${field} ${show(refusal[field])} where ${show(want)} was expected${hint}; the response: ${describe(res)}`,
    );
  }
  return refusal;
}

/** Throws if the guard refused the request: whatever the app answered, the guard let it through. */
export function expectNotRefusedByGuard(res: ResponseLike): void {
  const refusal = guardRefusal(res);
  if (refusal === null) return;
  throw new GuardExpectationError(
    `expected the request to pass the guard, but the guard refused it (${refusal.status}, namespace ${show(refusal.namespace)}${refusal.code === undefined ? '' : `, ${refusal.code}`}); the response: ${describe(res)}`,
  );
}

/** The refusal, or why the response is not one (in words, for a failure message). */
function readResponse(res: ResponseLike): { refusal: GuardRefusal } | { not: string } {
  const status = res.status ?? res.statusCode;
  if (status === undefined || !STATUSES.has(status)) {
    return {
      not: `it was answered ${status ?? 'without a status'} (the guard answers 503, 403 or 423)`,
    };
  }
  const namespace = header(res, 'x-namespace-read-only');
  if (namespace === undefined) {
    return { not: `the ${status} has no X-Namespace-Read-Only header: the app answered it` };
  }
  if (header(res, 'x-namespace-read-only-state') !== undefined) {
    return {
      not: `the ${status} carries X-Namespace-Read-Only-State: the guard let it through (marked by \`signal\`) and the app answered it`,
    };
  }
  const json = jsonBody(res);
  const code = json?.code;
  if (code !== undefined && !CODES.has(code)) {
    return {
      not: `the ${status}'s JSON code ${show(code)} is not one of the guard's (ERR_NSRO_*)`,
    };
  }
  const retryAfter = header(res, 'retry-after');
  return {
    refusal: {
      status,
      namespace: namespace === '?' ? null : namespace,
      code: code as RefusalCode | undefined,
      reason: typeof json?.reason === 'string' ? json.reason : undefined,
      message: typeof json?.message === 'string' ? json.message : undefined,
      retryAfter: retryAfter === undefined ? undefined : Number(retryAfter),
    },
  };
}

/** A header's (first) value; names compared case-insensitively, as HTTP does. */
function header(res: ResponseLike, name: string): string | undefined {
  let value = res.headers[name];
  if (value === undefined) {
    const key = Object.keys(res.headers).find((k) => k.toLowerCase() === name);
    value = key === undefined ? undefined : res.headers[key];
  }
  if (value === undefined) return undefined;
  return String(typeof value === 'object' ? value[0] : value);
}

/** The body as a JSON object, when the response says it is JSON. */
function jsonBody(res: ResponseLike): Record<string, unknown> | undefined {
  if (!(header(res, 'content-type') ?? '').toLowerCase().includes('json')) return undefined;
  let body = res.body;
  if (typeof body !== 'object' || body === null || Buffer.isBuffer(body)) {
    const raw = typeof res.text === 'string' ? res.text : body;
    try {
      body = JSON.parse(String(raw));
    } catch {
      return undefined;
    }
  }
  return typeof body === 'object' && body !== null && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : undefined;
}

function show(value: unknown): string {
  return value === undefined ? 'none' : JSON.stringify(value);
}

/** The status, the headers that matter here and the start of the body. */
function describe(res: ResponseLike): string {
  const parts = [`${res.status ?? res.statusCode}`];
  for (const name of ['x-namespace-read-only', 'x-namespace-read-only-state', 'content-type']) {
    const value = header(res, name);
    if (value !== undefined) parts.push(`${name}: ${value}`);
  }
  const text =
    typeof res.text === 'string' ? res.text : typeof res.body === 'string' ? res.body : '';
  if (text.length > 0)
    parts.push(`body: ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)}`);
  return parts.join(', ');
}
