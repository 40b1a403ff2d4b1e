import { match } from 'path-to-regexp';
import { queryKeyRoot } from '../request/method.js';
import { decodeSegment, rootNamespace } from '../request/namespace-name.js';
import {
  type IdKind,
  type NamespaceRoutes,
  NO_NAMESPACE,
  namespaceTarget,
  namespaceTargetAt,
  ROUTER_MATCH,
  type Target,
} from './target.js';

/**
 * GitLab's path grammar: the first segment is the root namespace unless it is a reserved
 * top-level word; `/groups/<full path>` names a group; the REST API takes a URL-encoded full
 * path or a numeric id. Literal words are compared raw (the router matches literals against the
 * still-encoded path, so `/%67roups/acme` is *not* the groups route: its namespace is "groups");
 * candidates are decoded once, as the router decodes a parameter.
 */

/** Top-level words that can never be a namespace (GitLab's `TOP_LEVEL_ROUTES`). */
const RESERVED = new Set([
  '-',
  '.well-known',
  '404.html',
  '422.html',
  '500.html',
  '502.html',
  '503.html',
  'admin',
  'api',
  'apple-touch-icon-precomposed.png',
  'apple-touch-icon.png',
  'assets',
  'dashboard',
  'deploy.html',
  'explore',
  'favicon.ico',
  'favicon.png',
  'files',
  'groups',
  'health_check',
  'help',
  'import',
  'jwt',
  'login',
  'o',
  'oauth',
  'profile',
  'projects',
  'public',
  'robots.txt',
  's',
  'search',
  'sitemap',
  'sitemap.xml',
  'sitemap.xml.gz',
  'slash-command-logo.png',
  'snippets',
  'unsubscribes',
  'uploads',
  'users',
  'v2',
]);

const API_KINDS: Readonly<Record<string, IdKind>> = {
  projects: 'project',
  groups: 'group',
  namespaces: 'namespace',
};

const EMPTY_SEGMENT: Target = Object.freeze({ type: 'invalid', reason: 'empty-segment' });
const AMBIGUOUS_ID: Target = Object.freeze({ type: 'invalid', reason: 'ambiguous-id' });

/** `git push` over HTTP starts with this GET; it must be refused while writes are. */
const pushDiscovery = match('/*repo/:project.git/info/refs', { ...ROUTER_MATCH, end: true });

export function gitlabRoutes(): NamespaceRoutes {
  return { resolve: resolveGitlabPath, startsWrite: startsGitPush, numericIds: true };
}

function resolveGitlabPath(pathname: string): Target {
  if (pathname.charCodeAt(0) !== 0x2f) return NO_NAMESPACE;
  // The first segment without cutting it out: most writes name a namespace there, and on this
  // path a slice, a `toLowerCase` and a Set lookup of a new string each cost as much as the rest.
  const slash = pathname.indexOf('/', 1);
  const end = slash === -1 ? pathname.length : slash;
  if (end === 1) return end === pathname.length ? NO_NAMESPACE : EMPTY_SEGMENT;
  const word = reservedAt(pathname, 1, end);
  if (word === null) return namespaceTargetAt(pathname, 1, end);
  if (word === 'groups') return candidateAt(new SegmentReader(pathname, end + 1));
  if (word === 'api') return resolveApiPath(new SegmentReader(pathname, end + 1));
  return NO_NAMESPACE;
}

/** RESERVED by length, for `reservedAt`. */
const RESERVED_BY_LENGTH: string[][] = [];
for (const word of RESERVED) {
  const same = RESERVED_BY_LENGTH[word.length] ?? [];
  same.push(word);
  RESERVED_BY_LENGTH[word.length] = same;
}

/**
 * The reserved word `text.slice(start, end)` spells, compared as the router compares literals
 * (ASCII case-insensitively), or `null`. Allocates nothing.
 */
function reservedAt(text: string, start: number, end: number): string | null {
  const candidates = RESERVED_BY_LENGTH[end - start];
  if (candidates === undefined) return null;
  for (const word of candidates) {
    let i = 0;
    for (; i < word.length; i++) {
      const c = text.charCodeAt(start + i);
      if ((c >= 0x41 && c <= 0x5a ? c + 0x20 : c) !== word.charCodeAt(i)) break;
    }
    if (i === word.length) return word;
  }
  return null;
}

/** `/api/v3|v4/projects|groups|namespaces/:id/...` */
function resolveApiPath(segments: SegmentReader): Target {
  // An empty slot with more path after it is what an Express 4 router mounted with `app.use`
  // swallows (`app.use('/api/v4', r)` serves `/api/v4//projects/x` as `/projects/x`).
  const version = segments.next()?.toLowerCase();
  if (version === '' && !segments.atEnd()) return EMPTY_SEGMENT;
  if (version !== 'v4' && version !== 'v3') return NO_NAMESPACE;
  const word = segments.next()?.toLowerCase();
  if (word === '' && !segments.atEnd()) return EMPTY_SEGMENT;
  const kind = API_KINDS[word ?? ''];
  if (kind === undefined) return NO_NAMESPACE;

  const raw = segments.next();
  if (raw === null || (raw === '' && segments.atEnd())) return NO_NAMESPACE; // the collection
  if (raw === '') return EMPTY_SEGMENT;
  const decoded = decodeSegment(raw);
  if (!decoded.ok) return { type: 'invalid', reason: decoded.reason };
  const id = decoded.value;
  if (isCanonicalId(id)) return { type: 'id', kind, id };
  // `0123`, `+5`, `12abc`, `.1e1`: an application that coerces with parseInt, Number or to_i
  // reads a number we did not resolve, so anything that reads as a number must be exactly one.
  if (readsAsNumber(id)) return AMBIGUOUS_ID;
  const root = rootNamespace(id);
  return root.ok
    ? { type: 'namespace', namespace: root.value }
    : { type: 'invalid', reason: root.reason };
}

/** The segment after `/groups`: a full group path whose first component is the root. */
function candidateAt(segments: SegmentReader): Target {
  const raw = segments.next();
  if (raw === null || (raw === '' && segments.atEnd()) || raw === '-') return NO_NAMESPACE;
  if (raw === '') return EMPTY_SEGMENT;
  return namespaceTarget(raw);
}

function startsGitPush(pathname: string, search: string | null): boolean {
  if (search === null || !pathname.toLowerCase().includes('/info/refs')) return false;
  if (pushDiscovery(pathname) === false) return false;
  return namesReceivePack(search);
}

/** Whether a query asks for `service=git-receive-pack`, under any spelling a parser reads as it. */
export function namesReceivePack(search: string): boolean {
  // `service` under any spelling a query parser reads as it (`[service]`, `service[]`...).
  for (const [key, service] of new URLSearchParams(search)) {
    if (queryKeyRoot(key).toLowerCase() !== 'service') continue;
    if (service.trim().toLowerCase() === 'git-receive-pack') return true;
  }
  return false;
}

/** `^[1-9][0-9]*$` without a RegExp. */
export function isCanonicalId(value: string): boolean {
  if (value.length === 0 || value.length > 20) return false;
  const first = value.charCodeAt(0);
  if (first < 0x31 || first > 0x39) return false;
  for (let i = 1; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Whether a number parser reads `value` as a number: `parseInt`/Ruby's `to_i` (`12abc`, `+5`,
 * ` 7`) or `Number()`/`Integer()` (`.1e1`, `0x1`, `0b1`, `1.0`). A non-canonical id an
 * application coerces names a project we never resolved.
 */
function readsAsNumber(value: string): boolean {
  return !Number.isNaN(Number.parseInt(value, 10)) || Number.isFinite(Number(value));
}

/** True for GitLab's reserved top-level words (raw segment, any case): never a namespace. */
export function isReservedTopLevel(segment: string): boolean {
  return reservedAt(segment, 0, segment.length) !== null;
}

/** Walks raw `/`-separated segments left to right without splitting the whole path. */
class SegmentReader {
  constructor(
    private readonly path: string,
    private position: number,
  ) {}

  /** The next raw segment, `''` for an empty one, `null` past the end. */
  next(): string | null {
    if (this.position > this.path.length) return null;
    const slash = this.path.indexOf('/', this.position);
    const end = slash === -1 ? this.path.length : slash;
    const segment = this.path.slice(this.position, end);
    this.position = end + 1;
    return segment;
  }

  /** True when the last segment returned was the final one. */
  atEnd(): boolean {
    return this.position > this.path.length;
  }
}
