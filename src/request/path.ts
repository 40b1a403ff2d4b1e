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
  /** The application the request is in: a mounted sub-app inside it, the root app elsewhere. */
  app?: MountedApp;
}

/**
 * What `app.use(path, subApp)` records on `subApp`: the path it was mounted at (a string, an
 * array or a RegExp, as passed) and the application it was mounted in. The root application has
 * `mountpath` `'/'` and no `parent`.
 */
interface MountedApp {
  readonly mountpath?: unknown;
  readonly parent?: MountedApp;
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
 * The path the application whose routes the grammar describes receives: `pathname` (the whole
 * pathname of `req.originalUrl`) less the mount path of the sub-application the guard sits in,
 * or less `relativeUrlRoot`, whichever is longer, so a guard inside a mounted sub-app and a guard
 * in front of it with `relativeUrlRoot` agree, and setting both to the same prefix removes it once.
 *
 * Router mounts are not removed. `app.use('/api/v4', guard)` and a guard in a `Router` mounted at
 * `/api/v4` run under `req.baseUrl` `/api/v4`, but the application still routes
 * `/api/v4/projects/acme%2Fproj`, and the grammar reads `acme` only from that whole path; with
 * `req.baseUrl` removed it would read `/projects/acme%2Fproj`, which names no namespace, and let
 * the write through. A sub-app is different: its routes are written relative to its mount, and
 * Express says where it is mounted (`req.app`, its `mountpath` and `parent`).
 *
 * `null` when the sub-app's mount prefix cannot be known: a mount path that is an array, a RegExp
 * or a pattern (parameters, wildcards), or a path that does not start with the mount chain (a
 * sub-app mounted twice records only its last mount). Then the grammar cannot be applied, and the
 * caller must refuse rather than guess.
 */
export function stripPrefix(req: IncomingMessage, pathname: string, root: string): string | null {
  const mounted = subAppPrefix(req, pathname);
  if (mounted === null) return null;
  const rooted = root.length > 0 && startsWithSegment(pathname, root, 0) ? root.length : 0;
  const cut = Math.max(mounted, rooted);
  if (cut === 0) return pathname;
  return cut === pathname.length ? '/' : pathname.slice(cut);
}

/**
 * Every path the application could receive from `pathname` under some mount prefix: the whole of
 * it and what follows each `/` after its first character, for a question that must be answered
 * even when `stripPrefix` cannot say which one it is.
 */
export function mountRemainders(pathname: string): string[] {
  const remainders = [pathname];
  for (let i = pathname.indexOf('/', 1); i !== -1; i = pathname.indexOf('/', i + 1)) {
    remainders.push(pathname.slice(i));
  }
  return remainders;
}

/** A mount path Express matches as literal text: whole segments, no pattern syntax. */
const LITERAL_MOUNT = /^(?:\/[\w\-.~%@,;=&']+)+\/?$/;
/** More nested sub-apps than anyone writes: a `parent` cycle, not an application. */
const MAX_MOUNT_DEPTH = 32;

/**
 * How much of `pathname` the mounts of the sub-app the request is in take up (0 outside any
 * sub-app), or `null` when that cannot be known. Each mount is matched as Express matches it:
 * case-insensitively, by whole segments, a trailing `/` in the mount path ignored. Express 4
 * mounts `/a` as `^\/a\/?(?=\/|$)`, so one doubled slash after a mount is swallowed and the next
 * mount matches after it (`/gitlab//gitlab/acme/x` reaches a sub-app mounted at `/gitlab` inside
 * one mounted at `/gitlab`). After the last mount the doubled slash is left in place: the grammar
 * refuses an empty segment where a name is expected.
 */
function subAppPrefix(req: IncomingMessage, pathname: string): number | null {
  let app = (req as ExpressLikeRequest).app;
  // Not in a sub-app (the root application, or no Express): nothing to measure.
  if (app?.parent == null) return 0;
  const chain: string[] = [];
  for (let depth = 0; app?.parent != null; depth++) {
    if (depth === MAX_MOUNT_DEPTH) return null;
    const mountpath = app.mountpath;
    if (typeof mountpath !== 'string') return null;
    if (mountpath !== '' && mountpath !== '/') {
      if (!LITERAL_MOUNT.test(mountpath)) return null;
      chain.push(mountpath.endsWith('/') ? mountpath.slice(0, -1) : mountpath);
    }
    app = app.parent;
  }
  let at = 0;
  for (let i = chain.length - 1; i >= 0; i--) {
    const mount = chain[i] as string;
    if (at > 0 && pathname.charCodeAt(at) === 0x2f && pathname.charCodeAt(at + 1) === 0x2f) at++;
    if (!startsWithSegment(pathname, mount, at)) return null;
    at += mount.length;
  }
  return at;
}

/** Case-insensitive, segment-bounded test for `prefix` at `at`, as Express mount matching does. */
function startsWithSegment(pathname: string, prefix: string, at: number): boolean {
  const end = at + prefix.length;
  if (pathname.length < end) return false;
  if (pathname.length > end && pathname.charCodeAt(end) !== 0x2f) return false;
  const head = pathname.slice(at, end);
  return head === prefix || head.toLowerCase() === prefix.toLowerCase();
}

/**
 * True when some segment of `pathname` is a dot segment (`.` or `..`) under any reading a later
 * layer might make: raw, percent-decoded once or more (`%2e%2e`, `%252e%252e`, `..%2F`), split
 * at `\` as well as `/`, or with a `;` path parameter cut off (`..;`). Clients remove dot
 * segments before sending (RFC 3986, 5.2.4), so only a crafted request carries one.
 */
export function hasDotSegment(pathname: string): boolean {
  if (!DOT_OR_ESCAPE.test(pathname)) return false;
  let start = pathname.charCodeAt(0) === 0x2f ? 1 : 0;
  while (start <= pathname.length) {
    const slash = pathname.indexOf('/', start);
    const end = slash === -1 ? pathname.length : slash;
    if (end > start && readsAsDotSegment(pathname.slice(start, end))) return true;
    start = end + 1;
  }
  return false;
}

/** One pass instead of two `indexOf`s: nearly every path has neither. */
const DOT_OR_ESCAPE = /[.%]/;

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
