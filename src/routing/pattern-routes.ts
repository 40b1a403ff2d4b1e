import { match, parse, type Token } from 'path-to-regexp';
import { OptionsError } from '../errors.js';
import {
  type NamespaceRoutes,
  NO_NAMESPACE,
  namespaceTarget,
  ROUTER_MATCH,
  type Target,
} from './target.js';

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
