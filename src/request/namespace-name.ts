import { NamespaceNameError } from '../errors.js';
import { INSTANCE } from '../state/values.js';

/**
 * What counts as a namespace name once a path segment has been decoded.
 *
 * The router decodes a parameter exactly once, so whatever survives that decode is what the
 * application will look up. Anything an application might normalise further (a `%` left for a
 * second decode, whitespace it might trim, `;` parameters, `\` that some proxies turn into `/`,
 * non-ASCII that case-folds into ASCII, dot segments) could name a different namespace than the
 * one we checked, so such candidates are refused rather than guessed at.
 */

/** Result of decoding one raw path segment the way the router decodes a parameter. */
export type Decoded = { ok: true; value: string } | { ok: false; reason: string };

/** Decode once with `decodeURIComponent`, as the router does; never twice. */
export function decodeSegment(raw: string): Decoded {
  if (raw.indexOf('%') === -1) return { ok: true, value: raw };
  try {
    return { ok: true, value: decodeURIComponent(raw) };
  } catch {
    return { ok: false, reason: 'undecodable' };
  }
}

/**
 * The root namespace of a decoded full path (`acme/team/proj` -> `acme`), lower-cased, or the
 * reason it is not a valid name.
 */
export function rootNamespace(decoded: string): Decoded {
  const slash = decoded.indexOf('/');
  const root = slash === -1 ? decoded : decoded.slice(0, slash);
  const invalid = invalidNameReason(root);
  return invalid === null
    ? { ok: true, value: root.toLowerCase() }
    : { ok: false, reason: invalid };
}

/** Longest root namespace we accept; GitLab's own limit is 255. */
const MAX_NAME_LENGTH = 255;

/**
 * Printable ASCII a name may still not contain: `%` would need a second decode, `;` starts a
 * path parameter, `\` is a slash to some parsers, `?` and `#` only arrive percent-encoded, and
 * the rest (RFC 3986's "unsafe" characters) no real name needs but markup and headers fear.
 */
const REFUSED = '%;\\?#"<>`{}|^';

/** Per ASCII code: 1 where a name may carry the character. Printable ASCII minus REFUSED. */
const ALLOWED = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) ALLOWED[c] = REFUSED.includes(String.fromCharCode(c)) ? 0 : 1;
ALLOWED[0x2f] = 0; // `/`: never inside one name (a full path is cut at its first `/` first)

/** `null` when `name` is a valid namespace name, else why not. Linear, no RegExp. */
export function invalidNameReason(name: string): string | null {
  if (name.length === 0) return 'empty';
  if (name.length > MAX_NAME_LENGTH) return 'too-long';
  if (name === '.' || name === '..') return 'dot-segment';
  for (let i = 0; i < name.length; i++) {
    // Printable ASCII only: no controls, no space, no DEL, nothing that case-folds from Unicode.
    if (ALLOWED[name.charCodeAt(i)] !== 1) return 'invalid-character';
  }
  return null;
}

/**
 * The root namespace `text.slice(start, end)` names when it is a plain segment — a valid name
 * with nothing to decode, the common case — lower-cased; `null` otherwise, and then the caller
 * takes the general path (`decodeSegment`, `rootNamespace`), which says why. One pass over the
 * characters and at most one new string, on every guarded write.
 */
export function plainNameAt(text: string, start: number, end: number): string | null {
  const length = end - start;
  if (length <= 0 || length > MAX_NAME_LENGTH) return null;
  let upper = false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    // ALLOWED has no `%` and no `/`: an escape or a separator leaves the fast path.
    if (ALLOWED[c] !== 1) return null;
    if (c >= 0x41 && c <= 0x5a) upper = true;
  }
  if (
    text.charCodeAt(start) === 0x2e &&
    (length === 1 || (length === 2 && text.charCodeAt(start + 1) === 0x2e))
  ) {
    return null;
  }
  const name = start === 0 && end === text.length ? text : text.slice(start, end);
  return upper ? name.toLowerCase() : name;
}

/**
 * The store key for a namespace a caller names (`'Acme/Team'` -> `'acme'`, `'*'` -> `'*'`).
 * Throws on a name no request could resolve to, so a typo fails loudly instead of silently
 * guarding nothing.
 */
export function namespaceKey(namespace: unknown): string {
  if (namespace === INSTANCE) return INSTANCE;
  const root = typeof namespace === 'string' ? rootNamespace(namespace) : null;
  if (root === null || !root.ok) {
    throw new NamespaceNameError(namespace);
  }
  return root.value;
}
