/**
 * The fixed world every fuzz run uses: which namespaces are in maintenance, which are writable,
 * and the numeric ids the REST API knows. The guard and the victim app read the same tables; the
 * oracle reads only these tables and what the victim's handlers recorded, never the guard's code.
 */

/** Root namespaces in maintenance. `gitlab` is also the mount prefix; `kit` is reachable from `K` (U+212A, Kelvin) by case folding; `my.ns` has a dot. */
export const MAINTENANCE: readonly string[] = ['acme', 'gitlab', 'kit', 'my.ns'];

/** Root namespaces that take writes. */
export const WRITABLE: readonly string[] = ['open', 'free', 'team'];

/** GitLab's reserved top-level words (from GitLab's `TOP_LEVEL_ROUTES`, copied from the docs). */
export const RESERVED: readonly string[] = [
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
];

export type IdKind = 'project' | 'group' | 'namespace';

/** Numeric ids -> full paths, per kind. */
export const IDS: Readonly<Record<IdKind, ReadonlyMap<number, string>>> = {
  project: new Map([
    [1, 'acme/web'],
    [2, 'open/web'],
    [3, 'gitlab/gitlab-ce'],
    [4, 'kit/k8s'],
    [5, 'free/tools'],
    [6, 'my.ns/p'],
    [10, 'team/big'],
    [12, 'acme/sub/deep'],
  ]),
  group: new Map([
    [1, 'acme'],
    [2, 'open'],
    [3, 'gitlab/sub'],
    [4, 'free'],
    [5, 'kit'],
  ]),
  namespace: new Map([
    [1, 'open'],
    [2, 'acme'],
    [3, 'kit'],
    [4, 'team'],
    [7, 'my.ns'],
  ]),
};

/** The mount prefix of the deployments that serve the app under a relative URL root. */
export const MOUNT = '/gitlab';
