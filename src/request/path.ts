import type { IncomingMessage } from 'node:http';
import parseurl from 'parseurl';

/**
 * The path the application's router matches, still percent-encoded.
 *
 * Express's router matches `parseurl(req).pathname`: a hand-rolled fast path for ordinary
 * targets and Node's legacy `url.parse` for absolute-form targets and targets containing `#`
 * (which, among other things, turns `\` into `/`). Using `parseurl` itself, on
 * `req.originalUrl`, is the only way to see exactly what the router will see; `new URL()` and
 * `path.normalize` resolve dot segments and decode characters the router leaves alone.
 */

/** Express adds these to Node's request; direct callers (benchmarks, other frameworks) may not. */
interface ExpressLikeRequest extends IncomingMessage {
  originalUrl?: string;
  baseUrl?: string;
}

/**
 * `parseurl`'s parse of `req.originalUrl`. Before any mount has rewritten `req.url` the two are
 * the same string, and then the router's own cached parse (`parseurl(req)`) is reused rather
 * than parsing the target twice. Throws what `url.parse` throws.
 */
export function parseTarget(req: IncomingMessage): ReturnType<typeof parseurl> {
  const original = (req as ExpressLikeRequest).originalUrl;
  return original === undefined || original === req.url ? parseurl(req) : parseurl.original(req);
}

/** `null` when the target has no pathname the router could route (it answers 404 then). */
export function routerPathname(req: IncomingMessage): string | null {
  try {
    const pathname = parseTarget(req)?.pathname;
    return typeof pathname === 'string' ? pathname : null;
  } catch {
    // The router treats a target it cannot parse as having no path at all.
    return null;
  }
}

/**
 * Removes the part of `pathname` the application does not see: the Express mount path the
 * guard sits under (`req.baseUrl`, a raw prefix of the same pathname) and the configured
 * `relativeUrlRoot`, whichever is longer, so a guard inside a mounted sub-app and a guard in
 * front of it agree.
 */
export function stripPrefix(req: IncomingMessage, pathname: string, root: string): string {
  const baseUrl = (req as ExpressLikeRequest).baseUrl;
  const mounted =
    typeof baseUrl === 'string' && baseUrl.length > 0 && startsWithSegment(pathname, baseUrl)
      ? baseUrl.length
      : 0;
  const rooted = root.length > 0 && startsWithSegment(pathname, root) ? root.length : 0;
  const cut = Math.max(mounted, rooted);
  if (cut === 0) return pathname;
  return cut === pathname.length ? '/' : pathname.slice(cut);
}

/** Case-insensitive, segment-bounded prefix test, as Express mount matching does. */
function startsWithSegment(pathname: string, prefix: string): boolean {
  if (pathname.length < prefix.length) return false;
  if (pathname.length > prefix.length && pathname.charCodeAt(prefix.length) !== 0x2f) return false;
  const head = pathname.slice(0, prefix.length);
  return head === prefix || head.toLowerCase() === prefix.toLowerCase();
}

/**
 * True when some segment of `pathname` is a dot segment (`.` or `..`) under any reading a later
 * layer might make: raw, percent-decoded once or more (`%2e%2e`, `%252e%252e`, `..%2F`), split
 * at `\` as well as `/`, or with a `;` path parameter cut off (`..;`). Clients remove dot
 * segments before sending (RFC 3986, 5.2.4), so only a crafted request carries one.
 */
export function hasDotSegment(pathname: string): boolean {
  if (pathname.indexOf('.') === -1 && pathname.indexOf('%') === -1) return false;
  let start = pathname.charCodeAt(0) === 0x2f ? 1 : 0;
  while (start <= pathname.length) {
    const slash = pathname.indexOf('/', start);
    const end = slash === -1 ? pathname.length : slash;
    if (end > start && readsAsDotSegment(pathname.slice(start, end))) return true;
    start = end + 1;
  }
  return false;
}

function readsAsDotSegment(segment: string): boolean {
  let current = segment;
  // Each round peels one layer of encoding; four covers `%25252e` and anything sane.
  for (let round = 0; round < 4; round++) {
    if (current.indexOf('.') !== -1 && hasDotPart(current)) return true;
    if (current.indexOf('%') === -1) return false;
    const decoded = current.replace(ASCII_ESCAPE, decodeAscii);
    if (decoded === current) return false;
    current = decoded;
  }
  return false;
}

/** Whether a `/`- or `\`-separated part, cut at its `;` parameters, is `.` or `..`. No allocation. */
function hasDotPart(text: string): boolean {
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i === text.length ? 0x2f : text.charCodeAt(i);
    if (c !== 0x2f && c !== 0x5c) continue;
    const semicolon = text.indexOf(';', start);
    const end = semicolon !== -1 && semicolon < i ? semicolon : i;
    const length = end - start;
    if (
      (length === 1 || length === 2) &&
      text.charCodeAt(start) === 0x2e &&
      (length === 1 || text.charCodeAt(start + 1) === 0x2e)
    ) {
      return true;
    }
    start = i + 1;
  }
  return false;
}

/** Only ASCII escapes matter here (`.`, `/`, `\`, `;`, `%`); a malformed one is left as it is. */
const ASCII_ESCAPE = /%([0-7][0-9a-f])/gi;
const decodeAscii = (_: string, hex: string) => String.fromCharCode(Number.parseInt(hex, 16));
