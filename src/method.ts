import type { IncomingHttpHeaders } from 'node:http';

/**
 * Reads are GET, HEAD, OPTIONS and TRACE; every other method is a write, WebDAV and unknown
 * verbs included (GitLab blocks only POST, PATCH, PUT and DELETE; we do not copy that gap).
 * A read that carries a method-override signal naming anything else is a write too: a
 * `method-override` middleware behind us would turn it into one.
 */

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
  // Cheap pre-filter: the key is either spelled out or percent-encoded somewhere.
  if (search.indexOf('%') === -1 && !/method/i.test(search)) return false;
  for (const [key, value] of new URLSearchParams(search)) {
    const k = key.toLowerCase();
    if ((k === '_method' || k.startsWith('_method[')) && namesWrite(value)) return true;
  }
  return false;
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
