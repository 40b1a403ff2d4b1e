import { match, parse, type Token } from 'path-to-regexp';
import { OptionsError } from './errors.js';
import { decodeSegment, rootNamespace } from './namespace-name.js';

/**
 * Where a request path says its namespace is. Path in, target out: the same raw pathname the
 * router matches, never a normalised copy.
 */

/** The kinds of numeric id GitLab's REST API accepts in place of a full path. */
export type IdKind = 'project' | 'group' | 'namespace';

export type Target =
  /** The path names no namespace (`/users/sign_in`, `/`): only the instance state applies. */
  | { readonly type: 'none' }
  /** A root namespace: decoded once, validated, lower-cased. */
  | { readonly type: 'namespace'; readonly namespace: string }
  /** A canonical numeric API id; `resolveId` maps it to a full path. */
  | { readonly type: 'id'; readonly kind: IdKind; readonly id: string }
  /** A candidate exists but cannot be trusted; a write to it is blocked. */
  | { readonly type: 'invalid'; readonly reason: string };

export interface NamespaceRoutes {
  /** Finds the namespace a router pathname (raw, percent-encoded, prefix removed) targets. */
  resolve(pathname: string): Target;
  /**
   * A read that starts a write (git's `info/refs?service=git-receive-pack` opens a push), so
   * it is refused like a write. `search` is the raw query string without `?`, or `null`.
   */
  startsWrite?(pathname: string, search: string | null): boolean;
}

export const NO_NAMESPACE: Target = Object.freeze({ type: 'none' });

/** Decodes a raw candidate once and turns it into a target. */
export function namespaceTarget(raw: string): Target {
  const decoded = decodeSegment(raw);
  if (!decoded.ok) return { type: 'invalid', reason: decoded.reason };
  const root = rootNamespace(decoded.value);
  return root.ok
    ? { type: 'namespace', namespace: root.value }
    : { type: 'invalid', reason: root.reason };
}

/** Express's own matching semantics: case-insensitive, one optional trailing slash. */
export const ROUTER_MATCH = { decode: false, sensitive: false, trailing: true } as const;

/**
 * Routes for applications shaped differently from GitLab: path-to-regexp v8 patterns with a
 * `namespace` parameter, e.g. `'/t/:namespace{/*rest}'` or `'/orgs/:namespace/*rest'`. The first
 * pattern that matches wins. Patterns match as a prefix (like `app.use`), so `'/t/:namespace'`
 * also covers `/t/acme/anything`: forgetting `{/*rest}` must not open a hole.
 */
export function patternRoutes(patterns: readonly string[]): NamespaceRoutes {
  const matchers = patterns.map((pattern, i) => compilePattern(pattern, `routes[${i}]`));
  function firstMatch(pathname: string): Target {
    for (const m of matchers) {
      const found = m(pathname);
      if (found === false) continue;
      const raw = found.params.namespace;
      // A wildcard `*namespace` yields segments; its first one is the root.
      const first = Array.isArray(raw) ? raw[0] : raw;
      return typeof first === 'string' ? namespaceTarget(first) : NO_NAMESPACE;
    }
    return NO_NAMESPACE;
  }
  return {
    resolve(pathname) {
      const target = firstMatch(pathname);
      if (pathname.indexOf('//') === -1) return target;
      // An Express 4 router mounted with `app.use` swallows a doubled slash after its mount
      // path (`app.use('/t', r)` serves `/t//acme/x` as `/acme/x`): when collapsing doubled
      // slashes changes the answer, neither answer can be trusted.
      const collapsed = firstMatch(pathname.replace(/\/\/+/g, '/'));
      return sameTarget(target, collapsed) ? target : EMPTY_SEGMENT;
    },
  };
}

const EMPTY_SEGMENT: Target = Object.freeze({ type: 'invalid', reason: 'empty-segment' });

function sameTarget(a: Target, b: Target): boolean {
  if (a.type !== b.type) return false;
  return a.type !== 'namespace' || b.type !== 'namespace' || a.namespace === b.namespace;
}

function compilePattern(pattern: unknown, option: string) {
  if (typeof pattern !== 'string' || !pattern.startsWith('/')) {
    throw new OptionsError(option, 'a path-to-regexp pattern starting with "/"', pattern);
  }
  let tokens: Token[];
  try {
    tokens = parse(pattern).tokens;
  } catch (error) {
    throw new OptionsError(option, `a valid path-to-regexp v8 pattern (${String(error)})`, pattern);
  }
  if (!hasParam(tokens, 'namespace')) {
    throw new OptionsError(option, 'a pattern with a `:namespace` parameter', pattern);
  }
  return match<Record<string, string | string[]>>(pattern, { ...ROUTER_MATCH, end: false });
}

function hasParam(tokens: readonly Token[], name: string): boolean {
  return tokens.some((t) =>
    t.type === 'group' ? hasParam(t.tokens, name) : t.type !== 'text' && t.name === name,
  );
}
