/**
 * The fixed world every fuzz run uses: which namespaces are in maintenance, frozen, reporting or
 * writable, what the instance's state is, the bypass secrets, and the numeric ids the REST API
 * knows. The guard and the victim app read the same tables; the oracle reads only these tables,
 * what the request carried and what the victim's handlers recorded, never the guard's code.
 */

/** Root namespaces in maintenance. `gitlab` is also the mount prefix; `kit` is reachable from `K` (U+212A, Kelvin) by case folding; `my.ns` has a dot. */
export const MAINTENANCE: readonly string[] = ['acme', 'gitlab', 'kit', 'my.ns'];

/** Root namespaces that take writes. */
export const WRITABLE: readonly string[] = ['open', 'free', 'team'];

/** Root namespaces in the `frozen` state: reads are refused too (the allowlist still applies). */
export const FROZEN: readonly string[] = ['ice', 'vault'];

/** Root namespaces in the `report` state: nothing is refused because of them. */
export const REPORT: readonly string[] = ['dry', 'sky'];

export type NamespaceStateName = 'maintenance' | 'frozen' | 'report';

/**
 * Scheduled windows: `soon` goes into maintenance a year from now (writable until then), `began`
 * was frozen from an hour ago (frozen now).
 */
export const SCHEDULED: Readonly<
  Record<string, { readonly state: NamespaceStateName; readonly startsAt: Date }>
> = {
  soon: { state: 'maintenance', startsAt: new Date(Date.now() + 365 * 24 * 3_600_000) },
  began: { state: 'frozen', startsAt: new Date(Date.now() - 3_600_000) },
};

/** The state in force for a root namespace in this world, `null` for none (writable). */
export function stateOf(namespace: string): NamespaceStateName | null {
  if (MAINTENANCE.includes(namespace)) return 'maintenance';
  if (FROZEN.includes(namespace) || namespace === 'began') return 'frozen';
  if (REPORT.includes(namespace)) return 'report';
  return null;
}

/** The guard's `writeRoutes`: `GET .../-/export` writes (the victim's `export` route). */
export const WRITE_ROUTES: readonly { readonly method: string; readonly path: string }[] = [
  { method: 'GET', path: '/*repo/-/export' },
];

/**
 * States that carry a `reason`, and the guard's `statusFor` for them: a refusal for `vault` is a
 * 403, one for `my.ns` a 423; every other refusal is a 503.
 */
export const REASONS: Readonly<Record<string, string>> = {
  vault: 'archived',
  'my.ns': 'legal-hold',
};
export const STATUS_FOR: Readonly<Record<string, 403 | 423 | 503>> = {
  archived: 403,
  'legal-hold': 423,
};

/** The status a refusal for `key` (a root namespace, `*`, or `?` for an unknowable target) has. */
export function refusalStatus(key: string): number {
  const reason = REASONS[key];
  return (reason === undefined ? undefined : STATUS_FOR[reason]) ?? 503;
}

/**
 * The instance's state (`*`): each victim runs in one of these worlds, with its own store.
 * `none` is the default world (the regression tests' one).
 */
export type InstanceState = 'none' | 'report' | 'maintenance';
export const INSTANCE_STATES: readonly InstanceState[] = ['none', 'report', 'maintenance'];

/**
 * The guard's `bypass.secret`: the first signs, both verify (rotation). Tokens signed with
 * another secret, expired, tampered with or naming another namespace must open nothing.
 */
export const BYPASS_SECRETS: readonly [string, string] = [
  'fuzz-bypass-secret-0123456789abcdefghij',
  'fuzz-previous-secret-0123456789abcdefgh',
];

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
    [20, 'ice/web'],
    [21, 'dry/web'],
    [22, 'vault/p'],
    [23, 'sky/sub/p'],
  ]),
  group: new Map([
    [1, 'acme'],
    [2, 'open'],
    [3, 'gitlab/sub'],
    [4, 'free'],
    [5, 'kit'],
    [6, 'ice'],
    [7, 'dry'],
  ]),
  namespace: new Map([
    [1, 'open'],
    [2, 'acme'],
    [3, 'kit'],
    [4, 'team'],
    [7, 'my.ns'],
    [8, 'sky'],
    [9, 'vault'],
  ]),
};

/** The mount prefix of the deployments that serve the app under a relative URL root. */
export const MOUNT = '/gitlab';
