import type { IncomingMessage } from 'node:http';
import { match } from 'path-to-regexp';
import { OptionsError } from '../errors.js';
import { ROUTER_MATCH } from './target.js';

/**
 * Writes that pass even in maintenance, identified the way the router identifies a route: a
 * method and a path-to-regexp pattern matched against the raw pathname, case-insensitively, with
 * one optional trailing slash. Never a substring, prefix or suffix test: GitLab once let
 * `POST /root/gitlab-ce/new/master/app/info/lfs/objects/batch` (a file creation) through because
 * its path merely ended like the LFS route.
 */

export type RouteParams = Partial<Record<string, string | string[]>>;

export interface AllowRule {
  /** An HTTP method, a list of them, or `'*'` for every write method. */
  readonly method: string | readonly string[];
  /** A path-to-regexp v8 pattern, e.g. `'/*repo/:project.git/git-upload-pack'`. */
  readonly path: string;
  /** Extra condition, e.g. "the user is an administrator". Raw (undecoded) params. */
  readonly when?: (req: IncomingMessage, params: RouteParams) => boolean;
}

/** The rule that let a write through, for the debug log. */
export type AllowlistMatch = (
  req: IncomingMessage,
  method: string,
  pathname: string,
) => AllowRule | null;

type Matcher = (path: string) => false | { params: RouteParams };

interface CompiledRule {
  readonly rule: AllowRule;
  readonly path: string;
  readonly methods: ReadonlySet<string> | null;
  /** One matcher per router mode (see `routerMode`), compiled when first needed. */
  readonly matchers: (Matcher | undefined)[];
}

/**
 * The app's routing settings as a number: 1 for `case sensitive routing`, 2 for `strict routing`
 * (no optional trailing slash). A rule must match exactly what the router would send to its
 * route: under case-sensitive routing `POST …/GIT-UPLOAD-PACK` is not the git fetch route, and
 * the route that does answer it may write. Read from `req.app`, the Express app serving the
 * request; a Router created with its own `caseSensitive`/`strict` options cannot be seen.
 */
function routerMode(req: IncomingMessage): number {
  const app = (req as { app?: { get?: unknown } }).app;
  if (typeof app?.get !== 'function') return 0;
  const setting = (name: string) => (app.get as (name: string) => unknown).call(app, name);
  return (
    (setting('case sensitive routing') === true ? 1 : 0) |
    (setting('strict routing') === true ? 2 : 0)
  );
}

function matcherFor(c: CompiledRule, mode: number): Matcher {
  let m = c.matchers[mode];
  if (m === undefined) {
    m = match<RouteParams>(c.path, {
      ...ROUTER_MATCH,
      sensitive: (mode & 1) !== 0,
      trailing: (mode & 2) === 0,
      end: true,
    });
    c.matchers[mode] = m;
  }
  return m;
}

export function compileAllowlist(rules: unknown, option = 'allowlist'): AllowlistMatch {
  if (!Array.isArray(rules))
    throw new OptionsError(option, 'an array of { method, path } rules', rules);
  const compiled = rules.map((rule: unknown, i) => compileRule(rule, `${option}[${i}]`));
  if (compiled.length === 0) return () => null;
  return function allowedBy(req, method, pathname) {
    const mode = routerMode(req);
    for (const c of compiled) {
      if (c.methods !== null && !c.methods.has(method)) continue;
      const found = matcherFor(c, mode)(pathname);
      if (found === false) continue;
      if (c.rule.when === undefined || c.rule.when(req, found.params) === true) return c.rule;
    }
    return null;
  };
}

function compileRule(rule: unknown, option: string): CompiledRule {
  if (typeof rule !== 'object' || rule === null) {
    throw new OptionsError(option, 'an object { method, path, when? }', rule);
  }
  const { method, path, when } = rule as Record<string, unknown>;
  const methods = compileMethods(method, `${option}.method`);
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new OptionsError(`${option}.path`, 'a path-to-regexp pattern starting with "/"', path);
  }
  if (when !== undefined && typeof when !== 'function') {
    throw new OptionsError(`${option}.when`, 'a function (req, params) => boolean', when);
  }
  let matches: Matcher;
  try {
    // Compiled now, so that a bad pattern fails when the guard is created.
    matches = match<RouteParams>(path, { ...ROUTER_MATCH, end: true });
  } catch (error) {
    throw new OptionsError(
      `${option}.path`,
      `a valid path-to-regexp v8 pattern (${String(error)})`,
      path,
    );
  }
  return { rule: rule as AllowRule, path, methods, matchers: [matches] };
}

function compileMethods(method: unknown, option: string): ReadonlySet<string> | null {
  if (method === '*') return null;
  const list = typeof method === 'string' ? [method] : method;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    !list.every((m) => typeof m === 'string' && /^[A-Za-z-]+$/.test(m))
  ) {
    throw new OptionsError(option, "an HTTP method, an array of methods, or '*'", method);
  }
  return new Set(list.map((m: string) => m.toUpperCase()));
}
