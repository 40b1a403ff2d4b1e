import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/**
 * Reads are GET, HEAD, OPTIONS and TRACE; every other method is a write, WebDAV and unknown
 * verbs included (GitLab blocks only POST, PATCH, PUT and DELETE; we do not copy that gap).
 * A read that carries a method-override signal naming anything else is a write too: a
 * `method-override` middleware behind us would turn it into one.
 */

/**
 * The method on the request line. A method-override middleware mounted before the guard has
 * already rewritten `req.method` (a form's `_method=GET` turns a POST into a GET) and keeps the
 * original in `req.originalMethod`; the wire method decides whether the request is a write.
 */
export function wireMethod(req: IncomingMessage): string {
  const original = (req as { originalMethod?: unknown }).originalMethod;
  return typeof original === 'string' && original.length > 0 ? original : (req.method ?? '');
}

export function isReadMethod(method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'TRACE';
}

const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/** True when a header asks for a method that is not a read. */
export function hasWriteOverrideHeader(headers: IncomingHttpHeaders): boolean {
  for (const name of OVERRIDE_HEADERS) {
    const value = headers[name];
    if (value !== undefined && namesWrite(value)) return true;
  }
  return false;
}

/** True when the query carries `_method` (any case or encoding of the key) naming a write. */
export function hasWriteOverrideQuery(search: string): boolean {
  if (!mayNameMethod(search)) return false;
  for (const [key, value] of new URLSearchParams(search)) {
    if (isMethodKey(key) && namesWrite(value)) return true;
  }
  return false;
}

/**
 * Every method an override signal asks for (each override header value, each `_method` value),
 * trimmed and upper-cased: a method-override middleware behind the guard may route the request
 * as any of them.
 */
export function overrideMethods(headers: IncomingHttpHeaders, search: string | null): string[] {
  const methods: string[] = [];
  for (const name of OVERRIDE_HEADERS) {
    const value = headers[name];
    if (value !== undefined) collectMethods(value, methods);
  }
  if (search !== null && mayNameMethod(search)) {
    for (const [key, value] of new URLSearchParams(search)) {
      if (isMethodKey(key)) collectMethods(value, methods);
    }
  }
  return methods;
}

/**
 * The parameter a query key sets under bracket or dot notation, as `qs` reads it (Express 4's
 * default query parser, Express 5's `extended` one): `_method[]`, `_method[0]`, `_method.x` and
 * `[_method]` all set `_method`. A key matched by name alone misses those spellings.
 */
export function queryKeyRoot(key: string): string {
  if (key.charCodeAt(0) === 0x5b /* [ */) {
    const close = key.indexOf(']');
    if (close !== -1) return key.slice(1, close);
  }
  let end = key.length;
  const bracket = key.indexOf('[');
  if (bracket > 0) end = bracket;
  const dot = key.indexOf('.');
  if (dot > 0 && dot < end) end = dot;
  return key.slice(0, end);
}

function isMethodKey(key: string): boolean {
  return queryKeyRoot(key).toLowerCase() === '_method';
}

/** Cheap pre-filter: the key is either spelled out or percent-encoded somewhere. */
function mayNameMethod(search: string): boolean {
  return search.indexOf('%') !== -1 || /method/i.test(search);
}

function collectMethods(value: string | string[], out: string[]): void {
  for (const v of typeof value === 'string' ? [value] : value) {
    for (const part of v.split(',')) {
      const method = part.trim().toUpperCase();
      if (method !== '') out.push(method);
    }
  }
}

/** A value (or comma-joined list, as Node joins repeated headers) naming a non-read method. */
function namesWrite(value: string | string[]): boolean {
  const values = typeof value === 'string' ? value.split(',') : value.flatMap((v) => v.split(','));
  for (const v of values) {
    const method = v.trim().toUpperCase();
    if (method !== '' && !isReadMethod(method)) return true;
  }
  return false;
}
