import type { IncomingMessage } from 'node:http';
import { decodeSegment } from '../request/namespace-name.js';
import { parseTarget } from '../request/path.js';
import type { AllowRule, RouteParams } from './allowlist.js';
import { isReservedTopLevel, namesReceivePack } from './gitlab-routes.js';

/**
 * What GitLab lets through while read-only (its `ReadOnly::Controller` allowlist and the EE
 * maintenance-mode additions), as route shapes. Namespace-scoped routes refuse a `/-/`
 * segment before the repository: in GitLab's grammar `-` ends the namespace path, so
 * `/g/p/-/new/main/app.git/info/lfs/objects/batch` is a file creation, not the LFS route.
 */

export interface GitlabAllowlistOptions {
  /**
   * Whether the request comes from an administrator. Without it the admin-only routes
   * (application settings, Geo admin) stay blocked.
   */
  readonly isAdmin?: (req: IncomingMessage) => boolean;
}

export function gitlabAllowlist(options: GitlabAllowlistOptions = {}): AllowRule[] {
  const { isAdmin } = options;
  const rules: AllowRule[] = [
    // Namespace scope: git fetch, LFS batch (uploads are refused later, by the upload route),
    // and the compare form, which POSTs but writes nothing.
    { method: 'POST', path: '/*repo/:project.git/git-upload-pack', when: repoPathOnly },
    { method: 'POST', path: '/*repo/:project.git/info/lfs/objects/batch', when: repoPathOnly },
    { method: 'POST', path: '/*repo/-/compare', when: repoPathOnly },
    // The read that starts a git fetch: only a `frozen` state refuses reads, and a fetch must
    // still work there (the push discovery, `service=git-receive-pack`, is a write anyway).
    { method: 'GET', path: '/*repo/:project.git/info/refs', when: fetchDiscovery },
    // Instance scope: signing in and out, tokens, SSO callbacks.
    { method: 'POST', path: '/users/sign_in' },
    // The sign-in page itself, which a frozen instance would refuse as a read.
    { method: 'GET', path: '/users/sign_in' },
    { method: 'POST', path: '/users/sign_out' },
    { method: ['GET', 'POST'], path: '/users/auth/*provider' },
    { method: 'POST', path: '/oauth/token' },
    { method: 'POST', path: '/jwt/auth' },
    { method: 'POST', path: '/admin/session' },
    { method: 'POST', path: '/admin/session/destroy' },
    // GraphQL refuses mutations itself (programmatic check, code ERR_NSRO_MAINTENANCE).
    { method: 'POST', path: '/api/graphql' },
    // gitlab-shell and Workhorse; the handlers behind it ask the state themselves.
    { method: '*', path: '/api/v4/internal{/*rest}' },
    { method: '*', path: '/api/v3/internal{/*rest}' },
    { method: '*', path: '/api/v4/geo_replication{/*rest}' },
    { method: '*', path: '/admin/sidekiq{/*rest}' },
  ];
  if (isAdmin !== undefined) {
    const admin = (req: IncomingMessage) => isAdmin(req) === true;
    rules.push(
      { method: 'PUT', path: '/api/v4/application/settings', when: admin },
      { method: 'POST', path: '/admin/application_settings/general', when: admin },
      { method: ['POST', 'PATCH'], path: '/admin/geo{/*rest}', when: admin },
    );
  }
  return rules;
}

/** A fetch's discovery read, never a push's (which `service=git-receive-pack` makes a write). */
function fetchDiscovery(req: IncomingMessage, params: RouteParams): boolean {
  if (!repoPathOnly(req, params)) return false;
  try {
    const query = parseTarget(req)?.query;
    return typeof query !== 'string' || !namesReceivePack(query);
  } catch {
    return false;
  }
}

/**
 * The wildcard before the repository must be a namespace path: it must not start with a
 * reserved top-level word, because the router sends `/groups/acme/-/compare` to the group scope
 * and `/api/v4/projects/1/x.git/git-upload-pack` to the API, not to these routes; and, decoded
 * as the application reads it, it must not contain a `-` segment, because in GitLab's grammar
 * `-` ends the namespace path (`/g/p/%2D/new/main/x.git/info/lfs/objects/batch` is a file
 * creation to an application that checks its params), nor an empty segment (an Express 4 mount
 * swallows the doubled slash of `/gitlab//groups/acme/-/compare` and routes it to the group
 * scope). An undecodable path is not one.
 */
function repoPathOnly(_req: IncomingMessage, params: RouteParams): boolean {
  const repo = params.repo;
  if (typeof repo !== 'string') return false;
  const slash = repo.indexOf('/');
  if (isReservedTopLevel(slash === -1 ? repo : repo.slice(0, slash))) return false;
  const decoded = decodeSegment(repo);
  if (!decoded.ok) return false;
  const parts = decoded.value.split('/');
  return !parts.includes('-') && !parts.includes('');
}
