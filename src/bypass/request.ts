import type { IncomingMessage } from 'node:http';

/**
 * Where a request carries its bypass token: the header, else the cookie (a browser session of
 * the team doing the migration). Only finds the token; `verifyBypassToken` decides what it is.
 */

/** The header, as Node spells it in `req.headers` (lower-case). */
export const BYPASS_HEADER = 'x-namespace-read-only-bypass';

/** The cookie's name. */
export const BYPASS_COOKIE = 'nsro_bypass';

/**
 * The token a request presents: the `X-Namespace-Read-Only-Bypass` header (its first value when
 * repeated), else the first well-formed `nsro_bypass` cookie, else `null`. Never throws.
 */
export function bypassTokenOf(req: IncomingMessage): string | null {
  const headers = req.headers;
  const header = firstValue(headers[BYPASS_HEADER]);
  if (header !== '') return header;
  const cookie = headers.cookie;
  // The common case, a request with no cookie of ours, costs one substring search.
  if (typeof cookie !== 'string' || !cookie.includes(BYPASS_COOKIE)) return null;
  return cookieValue(cookie, BYPASS_COOKIE);
}

/**
 * The first value of a header that may be repeated: Node joins repeats of an unknown header
 * with `, ` (an array when read through `headersDistinct`). `''` when there is none. A token has
 * no comma or whitespace, so whatever follows a comma is another value.
 */
function firstValue(value: string | readonly string[] | undefined): string {
  const first = typeof value === 'string' ? value : Array.isArray(value) ? value[0] : undefined;
  if (typeof first !== 'string') return '';
  const comma = first.indexOf(',');
  return (comma === -1 ? first : first.slice(0, comma)).trim();
}

/**
 * The value of the first well-formed cookie called `name` in a `Cookie` header (Node joins
 * repeated `Cookie` headers with `; `). Pairs are `name=value` separated by `;`, whitespace
 * around each trimmed, a value optionally in double quotes; a pair without `=`, or a value with
 * whitespace, a control character, `"`, `,`, `;` or `\` inside, is skipped (RFC 6265 cookie
 * octets). No decoding: a token needs none.
 */
export function cookieValue(header: string, name: string): string | null {
  let start = 0;
  while (start <= header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const pair = header.slice(start, end);
    const eq = pair.indexOf('=');
    if (eq !== -1 && pair.slice(0, eq).trim() === name) {
      let value = pair.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
        value = value.slice(1, -1);
      }
      if (value !== '' && isCookieOctets(value)) return value;
    }
    start = end + 1;
  }
  return null;
}

/** RFC 6265 `cookie-octet`s only: printable ASCII but space, `"`, `,`, `;` and `\`. */
function isCookieOctets(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x22 || c === 0x2c || c === 0x3b || c === 0x5c) return false;
  }
  return true;
}
