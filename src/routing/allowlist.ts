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

interface CompiledRule {
  readonly rule: AllowRule;
  readonly methods: ReadonlySet<string> | null;
  readonly matches: (path: string) => false | { params: RouteParams };
}

export function compileAllowlist(rules: unknown): AllowlistMatch {
  if (!Array.isArray(rules))
    throw new OptionsError('allowlist', 'an array of { method, path } rules', rules);
  const compiled = rules.map((rule: unknown, i) => compileRule(rule, `allowlist[${i}]`));
  if (compiled.length === 0) return () => null;
  return function allowedBy(req, method, pathname) {
    for (const c of compiled) {
      if (c.methods !== null && !c.methods.has(method)) continue;
      const found = c.matches(pathname);
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
  let matches: CompiledRule['matches'];
  try {
    matches = match<RouteParams>(path, { ...ROUTER_MATCH, end: true });
  } catch (error) {
    throw new OptionsError(
      `${option}.path`,
      `a valid path-to-regexp v8 pattern (${String(error)})`,
      path,
    );
  }
  return { rule: rule as AllowRule, methods, matches };
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
