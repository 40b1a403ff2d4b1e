import { decodeSegment, plainNameAt, rootNamespace } from '../request/namespace-name.js';

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
  /** True when `resolve` can answer `id` targets, which only a `resolveId` option can attribute. */
  readonly numericIds?: boolean;
}

export const NO_NAMESPACE: Target = Object.freeze({ type: 'none' });

/** Decodes a raw candidate once and turns it into a target. */
export function namespaceTarget(raw: string): Target {
  return namespaceTargetAt(raw, 0, raw.length);
}

/** `namespaceTarget(text.slice(start, end))`, without the slice for a plain name. */
export function namespaceTargetAt(text: string, start: number, end: number): Target {
  const plain = plainNameAt(text, start, end);
  if (plain !== null) return { type: 'namespace', namespace: plain };
  const decoded = decodeSegment(text.slice(start, end));
  if (!decoded.ok) return { type: 'invalid', reason: decoded.reason };
  const root = rootNamespace(decoded.value);
  return root.ok
    ? { type: 'namespace', namespace: root.value }
    : { type: 'invalid', reason: root.reason };
}

/** Express's own matching semantics: case-insensitive, one optional trailing slash. */
export const ROUTER_MATCH = { decode: false, sensitive: false, trailing: true } as const;
