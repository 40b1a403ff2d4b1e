import http from 'node:http';
import fc from 'fast-check';
import {
  COOKIE_STYLES,
  cleanPlacements,
  documentedGrant,
  HEADER_STYLES,
  type Placement,
  placementHeaders,
  placementQuery,
  TOKEN_KINDS,
  type TokenKind,
} from './tokens.js';
import type { Deployment } from './victim.js';
import {
  FROZEN,
  IDS,
  type IdKind,
  INSTANCE_STATES,
  type InstanceState,
  MAINTENANCE,
  MOUNT,
  REPORT,
  SCHEDULED,
  stateOf,
  WRITABLE,
} from './world.js';

/**
 * fast-check arbitraries for raw requests. A request is kept as structure (a template of path
 * segments plus a list of mutations, a query, headers...) so that shrinking removes mutations one
 * by one, and is rendered to bytes only when sent.
 *
 * The mutations are the bypass classes known from other path-based guards: letter case, single
 * and double percent encoding, `%2F` joining segments, malformed escapes, dot segments and their
 * encoded forms, duplicate and trailing slashes, backslashes, `;` parameters, whitespace, control
 * and non-ASCII characters (raw and encoded), Unicode that case-folds into ASCII, very long
 * segments and paths, `#` and absolute-form targets, method overrides and spoofed rewrite headers.
 * Each request also picks the instance state of the victim it goes to, and may carry bypass
 * tokens (valid or not, for its own namespace or another, in the header, a cookie or a decoy).
 */

export interface Mutation {
  readonly op:
    | 'case'
    | 'pct'
    | 'pct2'
    | 'join'
    | 'insert'
    | 'append'
    | 'prepend'
    | 'sep'
    | 'replace'
    | 'unicode'
    | 'long';
  /** Which segment, modulo the number of segments. */
  readonly at: number;
  /** Op-specific: a bit mask, a text, a length. */
  readonly arg: string;
}

export interface RequestSpec {
  readonly deployment: Deployment;
  readonly template: string;
  readonly method: string;
  readonly version: string;
  /** `''` for origin-form, else the scheme and authority of an absolute-form target. */
  readonly authority: string;
  /** The mount prefix as sent (`''` when none). */
  readonly prefix: string;
  readonly segments: readonly string[];
  readonly mutations: readonly Mutation[];
  /** Raw query without `?`, or `null`. */
  readonly query: string | null;
  /** Raw fragment without `#`, or `null`. */
  readonly fragment: string | null;
  readonly headers: readonly (readonly [string, string])[];
  /** The instance state (`*`) of the victim it is sent to. */
  readonly instance: InstanceState;
  /** Bypass tokens it carries. */
  readonly bypass: readonly Placement[];
  /** What must happen to a well-formed request (`null`: only the safety properties apply). */
  readonly expect: Expectation | null;
}

/** The outcome a well-formed request must have, from the world's states and its token. */
export interface Expectation {
  /**
   * `pass`: it reaches a handler for `namespace` (a write handler when `write`). `refuse`: the
   * guard answers it, naming `namespace` (`*` for the instance), and no handler runs.
   */
  readonly outcome: 'pass' | 'refuse';
  readonly namespace: string;
  readonly write: boolean;
}

// --- vocabulary --------------------------------------------------------------------------------

const NAMES = [
  ...MAINTENANCE,
  ...WRITABLE,
  ...FROZEN,
  ...REPORT,
  ...Object.keys(SCHEDULED),
  'ICE',
  'Dry',
  'Acme',
  'ACME',
  'GitLab',
  'unknown',
  'groups',
  'api',
  'admin',
  'users',
  '-',
  'help',
  '7',
  '2',
];
const PROJECTS = ['web', 'p', 'my.proj', 'gitlab-ce', 'x.git', 'sub'];
const WORDS = [
  'issues',
  'new',
  'main',
  'edit',
  'settings',
  '-',
  'compare',
  'tree',
  'blob',
  'info',
  'lfs',
  'objects',
  'batch',
  'refs',
  'git-upload-pack',
  'git-receive-pack',
  'internal',
  'graphql',
  'projects',
  'groups',
  'x.txt',
  'export',
];

const DOTS = [
  '.',
  '..',
  '%2e',
  '%2E',
  '%2e%2e',
  '%2E%2e',
  '.%2e',
  '%2e.',
  '%252e%252e',
  '%25252e%25252e',
  '..;',
  '.;x',
  '...',
  '..%2F',
  '%2e%2e%2f',
  '..%5C',
  '%c0%ae%c0%ae',
  '%u002e%u002e',
  '.\\',
  '..\\..',
];

/** Texts glued to a segment: parameters, escapes (good and malformed), odd characters. */
const GLUE = [
  ';',
  ';x=1',
  ';jsessionid=1',
  '%3B',
  '%3bx',
  '%',
  '%Z',
  '%4',
  '%%',
  '%zz',
  '%u0041',
  '%C3',
  '%80',
  '%FF',
  '%00',
  '%0A',
  '%0d%0a',
  '%09',
  '%20',
  '+',
  '%2B',
  ' ',
  '\t',
  '\x00',
  '\x0b',
  '\x7f',
  '\xa0',
  '\u0130',
  '\u212a',
  '\u017f',
  '\uff41',
  '\ufeff',
  '\u200b',
  '%C2%A0',
  '%E2%80%8B',
  '%EF%BB%BF',
  '%E2%84%AA',
  '%C5%BF',
  '%EF%BD%81',
  '~',
  '!',
  '$',
  '&',
  "'",
  '(',
  '*',
  ',',
  '=',
  '@',
  ':',
  '"',
  '<',
  '>',
  '`',
  '{',
  '}',
  '|',
  '^',
  '[',
  ']',
  '#',
  '?',
  '\\',
  '%5C',
  '%5c',
  '/',
  '%2F',
  '%2f',
  '%252F',
  '.',
  '.git',
  '%2Egit',
];

/** Separators placed before a segment instead of `/`. */
const SEPARATORS = ['//', '\\', '/\\', '\\/', '%2F', '%2f', '%5C', '///', '/./', '/../', '/%2e/'];

/** Letters that case-fold or NFKC-normalise into ASCII. */
const LOOKALIKES: Readonly<Record<string, readonly string[]>> = {
  k: ['\u212a'], // KELVIN SIGN -> k
  s: ['\u017f'], // LATIN SMALL LETTER LONG S -> s (NFKC)
  a: ['\uff41', '\u0410'], // fullwidth a; Cyrillic A (a look-alike that folds nowhere)
  i: ['\u0130', '\u0131'],
  e: ['\uff45'],
  o: ['\uff4f', '\u2092'],
  c: ['\u217d'], // SMALL ROMAN NUMERAL ONE HUNDRED -> c (NFKC)
  m: ['\u217f'],
  t: ['\uff54'],
};

export const METHODS: readonly string[] = http.METHODS;
const WRITE_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];
const READ_METHODS = ['GET', 'HEAD', 'OPTIONS', 'TRACE'];
const BAD_METHODS = ['get', 'Post', 'FOO', 'PRI', 'CONNECT', 'put ', 'P UT'];

const OVERRIDE_HEADERS = [
  'X-HTTP-Method-Override',
  'x-http-method-override',
  'X-HTTP-Method',
  'X-Method-Override',
  'X-HTTP-METHOD-OVERRIDE',
  'X_HTTP_Method_Override',
  'X-Http-Method-Override ',
];
const OVERRIDE_VALUES = [
  'PUT',
  'put',
  'DELETE',
  'Patch',
  ' POST ',
  'GET',
  'get',
  'GET, PUT',
  'PUT, GET',
  'GET,DELETE',
  'HEAD',
  'PROPPATCH',
  'MKCOL',
  'FOO',
  '',
  'P%55T',
  'PUT\t',
];
const REWRITE_HEADERS = [
  'X-Original-URL',
  'X-Rewrite-URL',
  'X-Forwarded-Prefix',
  'X-Forwarded-Uri',
  'X-Original-URI',
  'X-Forwarded-Path',
];
const REWRITE_VALUES = [
  '/open/web',
  '/acme/web',
  '/gitlab',
  '/',
  '/users/sign_in',
  '/api/v4/internal',
];

const METHOD_KEYS = [
  '_method',
  '_METHOD',
  '%5Fmethod',
  '%5fmethod',
  '_method[]',
  '_method[0]',
  '_method[x]',
  '[_method]',
  '%5B_method%5D',
  '_method%5B%5D',
  '[_method][]',
  '_method.x',
  '_method%00',
  '_meth%6fd',
  '_method+',
  '+_method',
];
const SERVICE_KEYS = [
  'service',
  'SERVICE',
  '%73ervice',
  'service[]',
  'service[0]',
  '[service]',
  '%5Bservice%5D',
  'service%5B%5D',
  'serv%69ce',
  'service+',
];
const SERVICE_VALUES = [
  'git-receive-pack',
  'GIT-RECEIVE-PACK',
  'git%2Dreceive-pack',
  'git-receive-pack+',
  '+git-receive-pack',
  'git-receive-pack%20',
  'git-upload-pack',
  'git-receive-pack%00',
];

// --- segments ------------------------------------------------------------------------------------

const name = fc.constantFrom(...NAMES);
const project = fc.constantFrom(...PROJECTS);
const word = fc.constantFrom(...WORDS);
const subgroups = fc.array(fc.constantFrom('sub', 'team', 'deep', 'open', 'acme'), {
  maxLength: 2,
});

const dashTail = fc.constantFrom(
  ['issues'],
  ['new', 'main', 'app'],
  ['compare'],
  ['export'],
  ['merge_requests', '1'],
  ['settings', 'repository'],
  ['new', 'main', 'app', 'info', 'lfs', 'objects', 'batch'],
  ['tree', 'main', 'x.git', 'git-upload-pack'],
  ['blob', 'main', 'p.git', 'info', 'lfs', 'objects', 'batch'],
);
const gitTail = fc.constantFrom(
  ['git-upload-pack'],
  ['git-receive-pack'],
  ['info', 'refs'],
  ['info', 'lfs', 'objects', 'batch'],
  ['info', 'lfs', 'locks'],
  ['info', 'lfs', 'locks', 'verify'],
  ['gitlab-lfs', 'objects', 'abc', '12'],
);
const apiId = fc.oneof(
  fc.constantFrom('1', '2', '3', '4', '5', '6', '7', '10', '12', '99'),
  fc.constantFrom(
    '0',
    '01',
    '007',
    '-1',
    '+1',
    '1e0',
    '.1e1',
    '+.1e1',
    '0x1',
    '1.0',
    '1.',
    ' 1',
    '1abc',
    '1%20',
    '%201',
    '0b1',
    '1_0',
  ),
  fc.tuple(name, project).map(([ns, p]) => `${ns}%2F${p}`),
  fc.tuple(name, project).map(([ns, p]) => `${ns}%2f${p}`),
  name,
);
const apiTail = fc.constantFrom(
  [],
  ['issues'],
  ['repository', 'files', 'a%2Fb'],
  ['variables'],
  ['-', 'x'],
);

const templates: Record<string, fc.Arbitrary<string[]>> = {
  namespace: fc.tuple(name, fc.array(word, { maxLength: 3 })).map(([ns, rest]) => [ns, ...rest]),
  dash: fc
    .tuple(name, subgroups, project, dashTail)
    .map(([ns, sub, p, tail]) => [ns, ...sub, p, '-', ...tail]),
  groupDash: fc
    .tuple(name, fc.constantFrom(['settings'], ['edit'], ['compare']))
    .map(([ns, tail]) => [ns, '-', ...tail]),
  groups: fc
    .tuple(name, subgroups, fc.constantFrom([], ['-', 'edit'], ['-', 'compare']))
    .map(([ns, sub, tail]) => ['groups', ns, ...sub, ...tail]),
  api: fc
    .tuple(
      fc.constantFrom('v4', 'v3', 'V4', 'v5'),
      fc.constantFrom('projects', 'groups', 'namespaces', 'Projects', 'internal', 'users'),
      apiId,
      apiTail,
    )
    .map(([v, kind, id, tail]) => ['api', v, kind, id, ...tail]),
  git: fc
    .tuple(name, subgroups, project, gitTail)
    .map(([ns, sub, p, tail]) => [ns, ...sub, p.endsWith('.git') ? p : `${p}.git`, ...tail]),
  instance: fc.constantFrom(
    ['users', 'sign_in'],
    ['users', 'sign_out'],
    ['users', 'auth', 'saml'],
    ['api', 'graphql'],
    ['api', 'v4', 'internal', 'allowed'],
    ['api', 'v3', 'internal', 'lfs'],
    ['admin', 'sidekiq'],
    ['oauth', 'token'],
    ['jwt', 'auth'],
    ['admin', 'session'],
  ),
};

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('case' as const),
      at: fc.nat(20),
      arg: fc.nat(0xffff).map(String),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('pct' as const),
      at: fc.nat(20),
      arg: fc.nat(0xffff).map(String),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('pct2' as const),
      at: fc.nat(20),
      arg: fc.nat(0xffff).map(String),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('join' as const),
      at: fc.nat(20),
      arg: fc.constantFrom('%2F', '%2f', '%252F', '%5C', '\\', '%2F%2F'),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(20),
      arg: fc.oneof(fc.constantFrom(...DOTS), fc.constant(''), name),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      at: fc.nat(20),
      arg: fc.constantFrom(...GLUE),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('prepend' as const),
      at: fc.nat(20),
      arg: fc.constantFrom(...GLUE),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('sep' as const),
      at: fc.nat(20),
      arg: fc.constantFrom(...SEPARATORS),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('replace' as const),
      at: fc.nat(20),
      arg: fc.oneof(name, word, fc.constantFrom(...DOTS)),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('unicode' as const),
      at: fc.nat(20),
      arg: fc.constantFrom('raw', 'encoded'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('long' as const),
      at: fc.nat(20),
      arg: fc.constantFrom('64', '255', '256', '2000', '9000', 'segments'),
    }),
  },
);

// --- the rest of the request -----------------------------------------------------------------------

const method = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...WRITE_METHODS) },
  { weight: 5, arbitrary: fc.constantFrom(...READ_METHODS) },
  { weight: 5, arbitrary: fc.constantFrom(...METHODS) },
  { weight: 1, arbitrary: fc.constantFrom(...BAD_METHODS) },
);

const queryPair = fc.oneof(
  fc.tuple(fc.constantFrom(...METHOD_KEYS), fc.constantFrom(...OVERRIDE_VALUES)),
  fc.tuple(fc.constantFrom(...SERVICE_KEYS), fc.constantFrom(...SERVICE_VALUES)),
  fc.tuple(fc.constantFrom('a', 'ref', 'utf8', ''), fc.constantFrom('1', '', '%', '%zz', '#x')),
);
const query = fc.option(
  fc
    .tuple(fc.array(queryPair, { minLength: 1, maxLength: 3 }), fc.constantFrom('&', ';', '&&'))
    .map(([pairs, sep]) => pairs.map(([k, v]) => (k === '' ? v : `${k}=${v}`)).join(sep)),
  { freq: 3 },
);
const fragment = fc.option(fc.constantFrom('', 'x', '/../acme/web', '?_method=PUT', '/x#y'), {
  freq: 6,
});

const header = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom(...OVERRIDE_HEADERS), fc.constantFrom(...OVERRIDE_VALUES)),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(...REWRITE_HEADERS), fc.constantFrom(...REWRITE_VALUES)),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant('Content-Type'),
      fc.constantFrom(
        'application/json',
        'application/x-www-form-urlencoded',
        'application/vnd.git-lfs+json',
      ),
    ),
  },
);
const headers = fc.array(header, { maxLength: 3 });

const authority = fc.oneof(
  { weight: 12, arbitrary: fc.constant('') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'http://h',
      'HTTP://H:80',
      'https://u:p@h',
      'foo://h',
      'http://[::1]',
      'http://h.',
      'git://h',
      'http://h@gitlab',
      'http://h:1',
    ),
  },
);

/** The mount prefix: for `top` mostly none; for the mounted deployments mostly `/gitlab`. */
const PREFIX_VARIANTS = [
  '',
  '/GITLAB',
  '/GitLab',
  '/gitlab/',
  '/%67itlab',
  '/gitlab;x',
  '/gitlab/gitlab',
  '/gitlab%2F',
  '/gitlab\\',
  '/gitlab/.',
  '/gitlab/..',
  '/x/../gitlab',
  '/gitlab.',
  '/gitlab%20',
];
const prefixChoice = fc.oneof(
  { weight: 10, arbitrary: fc.constant(-1) },
  { weight: 4, arbitrary: fc.nat(PREFIX_VARIANTS.length - 1) },
);
function prefixFor(deployment: Deployment, choice: number): string {
  if (choice === -1) return deployment === 'top' ? '' : MOUNT;
  const variant = PREFIX_VARIANTS[choice] ?? '';
  // `top` serves no prefix: a variant there is just another first segment, so keep it rare.
  return deployment === 'top' && choice % 3 !== 0 ? '' : variant;
}

const deployment = fc.constantFrom<Deployment>('top', 'front', 'inside');
const version = fc.oneof(
  { weight: 30, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', '') },
);
const templated = fc.oneof(
  ...Object.entries(templates).map(([template, segments]) =>
    segments.map((s) => ({ template, segments: s })),
  ),
);

/** The instance state of the victim a request goes to: mostly none. */
const instance = fc.oneof(
  { weight: 3, arbitrary: fc.constant<InstanceState>('none') },
  { weight: 2, arbitrary: fc.constantFrom<InstanceState>(...INSTANCE_STATES) },
);

// --- bypass tokens -------------------------------------------------------------------------------

/** Stands for the namespace the request's template targets, resolved once the template is known. */
const TARGET = '$target';
const TOKEN_NAMESPACES = [...MAINTENANCE, ...FROZEN, ...REPORT, ...WRITABLE, '*'];
const tokenNamespace = fc.oneof(
  { weight: 3, arbitrary: fc.constant(TARGET) },
  { weight: 2, arbitrary: fc.constantFrom(...TOKEN_NAMESPACES) },
);
const tokenKind = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<TokenKind>('valid', 'rotated') },
  { weight: 2, arbitrary: fc.constantFrom(...TOKEN_KINDS) },
);
const placement: fc.Arbitrary<Placement> = fc.record({
  channel: fc.oneof(
    { weight: 2, arbitrary: fc.constant('header' as const) },
    { weight: 2, arbitrary: fc.constant('cookie' as const) },
    { weight: 1, arbitrary: fc.constant('decoy' as const) },
  ),
  kind: tokenKind,
  namespace: tokenNamespace,
  style: fc.nat(63),
});
const placements = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Placement[]>([]) },
  { weight: 3, arbitrary: fc.array(placement, { minLength: 1, maxLength: 2 }) },
);

const cleanStyles = (styles: readonly { clean: boolean }[]): number[] =>
  styles.flatMap((s, i) => (s.clean ? [i] : []));
const cleanPlacement = (channel: 'header' | 'cookie'): fc.Arbitrary<Placement> =>
  fc.record({
    channel: fc.constant(channel),
    kind: tokenKind,
    namespace: tokenNamespace,
    style: fc.constantFrom(...cleanStyles(channel === 'header' ? HEADER_STYLES : COOKIE_STYLES)),
  });
/** Tokens as clients are told to send them: one, in the header or a cookie, or one in each. */
const cleanTokens = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Placement[]>([]) },
  {
    weight: 4,
    arbitrary: fc
      .oneof(cleanPlacement('header'), cleanPlacement('cookie'))
      .map((p): Placement[] => [p]),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(cleanPlacement('header'), cleanPlacement('cookie')).map((t) => [...t]),
  },
);

function withTarget(list: readonly Placement[], target: string): Placement[] {
  return list.map((p) => (p.namespace === TARGET ? { ...p, namespace: target } : p));
}

const API_COLLECTIONS: Record<string, IdKind> = {
  projects: 'project',
  groups: 'group',
  namespaces: 'namespace',
};

/** The root namespace a template addresses, before mutations (`*` for instance routes). */
function templateRoot(template: string, segments: readonly string[]): string {
  if (template === 'instance') return '*';
  if (template === 'groups') return (segments[1] ?? '').toLowerCase();
  if (template === 'api') {
    const id = segments[3] ?? '';
    const path = /^(.*?)%2f/i.exec(id);
    if (path !== null) return (path[1] ?? '').toLowerCase();
    const kind = API_COLLECTIONS[(segments[2] ?? '').toLowerCase()];
    const full = kind === undefined ? undefined : IDS[kind].get(Number(id));
    return (full ?? id).split('/')[0]?.toLowerCase() ?? '';
  }
  return (segments[0] ?? '').toLowerCase();
}

/** Anything at all: the safety property must hold for every one of these. */
export const adversarialRequest: fc.Arbitrary<RequestSpec> = fc
  .record({
    deployment,
    templated,
    method,
    version,
    authority,
    prefix: prefixChoice,
    mutations: fc.array(mutation, { maxLength: 4 }),
    query,
    fragment,
    headers,
    instance,
    bypass: placements,
  })
  .map(
    ({ templated: t, prefix, bypass, ...rest }): RequestSpec => ({
      ...rest,
      template: t.template,
      segments: t.segments,
      prefix: prefixFor(rest.deployment, prefix),
      bypass: withTarget(bypass, templateRoot(t.template, t.segments)),
      expect: null,
    }),
  );

/** Namespaces of every state, as clients legitimately spell them. */
const spelled = fc
  .tuple(
    fc.constantFrom(...WRITABLE, ...REPORT, ...MAINTENANCE, ...FROZEN, ...Object.keys(SCHEDULED)),
    fc.constantFrom('lower', 'upper', 'title'),
  )
  .map(([ns, style]) =>
    style === 'lower'
      ? ns
      : style === 'upper'
        ? ns.toUpperCase()
        : `${ns[0]?.toUpperCase()}${ns.slice(1)}`,
  );
const WEBDAV = ['PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'PROPFIND'];
const anyWrite = fc.constantFrom(...WRITE_METHODS, ...WEBDAV);
const anyRead = fc.constantFrom('GET', 'HEAD', 'GET', 'OPTIONS');

/** The ids, per API collection, whose full path lies in root namespace `root`. */
function idsIn(collection: string, root: string): string[] {
  const kind = API_COLLECTIONS[collection] ?? 'project';
  return [...IDS[kind]].filter(([, path]) => path.split('/')[0] === root).map(([id]) => String(id));
}

const WRITE_SHAPES = [
  'namespace',
  'dash',
  'nested',
  'groups',
  'api-path',
  'api-id',
  'receive-pack',
  'lfs-locks',
  'push-discovery',
  'override',
  'export',
  'git-fetch',
  'lfs-batch',
  'compare',
] as const;
const READ_SHAPES = [
  'read',
  'read-dash',
  'read-groups',
  'read-api-path',
  'fetch-discovery',
  'refs',
  'instance-read',
] as const;
type Shape = (typeof WRITE_SHAPES)[number] | (typeof READ_SHAPES)[number];
const INSTANCE_PAGES = [['users', 'sign_in'], ['help'], ['api', 'v4', 'projects']];
/** Shapes GitLab lets through whatever the state (git fetch and its discovery, LFS batch, compare). */
const ALLOWLISTED: ReadonlySet<Shape> = new Set<Shape>([
  'git-fetch',
  'lfs-batch',
  'compare',
  'fetch-discovery',
  'refs',
]);

/**
 * What the guard must do with a well-formed request to `namespace`: the world's states and the
 * token it documents reading (`grant`) decide. `frozen` refuses reads and writes, `maintenance`
 * writes, `report` nothing; a token lifts only the state of the namespace it names (`*`: the
 * instance's), so a write to a namespace in maintenance while the instance is too stays refused
 * whatever the token; the allowlist lets its routes through every state.
 */
export function expectedOutcome(
  namespace: string,
  write: boolean,
  allowlisted: boolean,
  instanceState: InstanceState,
  grant: string | null,
): Expectation {
  const own = stateOf(namespace);
  if (!allowlisted) {
    if ((own === 'frozen' || (write && own === 'maintenance')) && grant !== namespace) {
      return { outcome: 'refuse', namespace, write };
    }
    if (write && instanceState === 'maintenance' && grant !== '*') {
      return { outcome: 'refuse', namespace: '*', write };
    }
  }
  return { outcome: 'pass', namespace, write };
}

/**
 * Well-formed requests to namespaces of every state, with or without a cleanly sent token, to
 * victims of every instance state: each must have the outcome `expectedOutcome` gives, so writes
 * to writable and reporting namespaces, reads outside frozen ones, allowlisted requests and
 * writes carrying the right token reach their handlers, and the rest are refused.
 */
export const wellFormedRequest: fc.Arbitrary<RequestSpec> = fc
  .record({
    deployment,
    ns: spelled,
    p: fc.constantFrom('web', 'my.proj', 'gitlab-ce'),
    shape: fc.oneof(
      { weight: 2, arbitrary: fc.constantFrom(...WRITE_SHAPES) },
      { weight: 1, arbitrary: fc.constantFrom(...READ_SHAPES) },
    ),
    write: anyWrite,
    read: anyRead,
    kind: fc.constantFrom('projects', 'groups', 'namespaces'),
    pick: fc.nat(2),
    trailing: fc.boolean(),
    instance,
    bypass: cleanTokens,
  })
  .map(({ deployment: dep, ns, p, write, read, kind, pick, trailing, ...rest }): RequestSpec => {
    let shape: Shape = rest.shape;
    const root = ns.toLowerCase();
    let segments: string[];
    let method = write;
    let query: string | null = null;
    let headers: [string, string][] = [];
    if (shape === 'api-id' && idsIn(kind, root).length === 0) shape = 'api-path';
    switch (shape) {
      case 'namespace':
        segments = [ns, p];
        break;
      case 'dash':
        segments = [ns, p, '-', 'issues'];
        break;
      case 'nested':
        segments = [ns, 'sub', p, '-', 'new', 'main'];
        break;
      case 'groups':
        segments = ['groups', ns, '-', 'edit'];
        break;
      case 'api-path':
        segments = ['api', 'v4', 'projects', `${ns}%2F${p}`, 'issues'];
        break;
      case 'api-id': {
        const ids = idsIn(kind, root);
        segments = ['api', 'v4', kind, ids[pick % ids.length] as string];
        break;
      }
      case 'receive-pack':
        segments = [ns, `${p}.git`, 'git-receive-pack'];
        method = 'POST';
        break;
      case 'lfs-locks':
        segments = [ns, `${p}.git`, 'info', 'lfs', 'locks'];
        method = 'POST';
        break;
      case 'push-discovery':
        segments = [ns, `${p}.git`, 'info', 'refs'];
        method = 'GET';
        query = 'service=git-receive-pack';
        break;
      case 'override':
        segments = [ns, p];
        method = 'GET';
        headers = [['X-HTTP-Method-Override', 'PUT']];
        break;
      // A read that writes, as the guard's `writeRoutes` says (Express routes HEAD to it too).
      case 'export':
        segments = [ns, p, '-', 'export'];
        method = pick === 0 ? 'HEAD' : 'GET';
        break;
      // Allowlisted routes pass whatever the state, as git and browsers send them.
      case 'git-fetch':
        segments = [ns, 'sub', `${p}.git`, 'git-upload-pack'];
        headers = [
          ['Content-Type', 'application/x-git-upload-pack-request'],
          ['Git-Protocol', 'version=2'],
        ];
        method = 'POST';
        break;
      case 'lfs-batch':
        segments = [ns, `${p}.git`, 'info', 'lfs', 'objects', 'batch'];
        headers = [['Content-Type', 'application/vnd.git-lfs+json']];
        method = 'POST';
        break;
      case 'compare':
        segments = [ns, p, '-', 'compare'];
        headers = [['Content-Type', 'application/x-www-form-urlencoded']];
        method = 'POST';
        break;
      case 'fetch-discovery':
        segments = [ns, `${p}.git`, 'info', 'refs'];
        method = 'GET';
        query = 'service=git-upload-pack';
        break;
      case 'refs':
        segments = [ns, `${p}.git`, 'info', 'refs'];
        method = 'GET';
        break;
      // Reads: refused only in a frozen namespace.
      case 'read':
        segments = [ns, p];
        method = read;
        break;
      case 'read-dash':
        segments = [ns, p, '-', 'tree', 'main'];
        method = read;
        break;
      case 'read-groups':
        segments = ['groups', ns];
        method = read;
        break;
      case 'read-api-path':
        segments = ['api', 'v4', 'projects', `${ns}%2F${p}`];
        method = read;
        break;
      // Pages of no namespace: no namespace's state refuses them.
      case 'instance-read':
        segments = INSTANCE_PAGES[pick] as string[];
        method = read;
        break;
    }
    if (trailing && shape !== 'push-discovery') segments.push('');
    const target = shape === 'instance-read' ? '*' : root;
    const bypass = withTarget(rest.bypass, target);
    const isWrite = !(READ_SHAPES as readonly string[]).includes(shape);
    return {
      deployment: dep,
      template: `well-formed ${shape}`,
      method,
      version: 'HTTP/1.1',
      authority: '',
      prefix: dep === 'top' ? '' : MOUNT,
      segments,
      mutations: [],
      query,
      fragment: null,
      headers,
      instance: rest.instance,
      bypass,
      expect: cleanPlacements(bypass)
        ? expectedOutcome(
            target,
            isWrite,
            ALLOWLISTED.has(shape),
            rest.instance,
            documentedGrant(bypass),
          )
        : null,
    };
  });

export const anyRequest: fc.Arbitrary<RequestSpec> = fc.oneof(
  { weight: 1, arbitrary: wellFormedRequest },
  { weight: 5, arbitrary: adversarialRequest },
);

// --- rendering ---------------------------------------------------------------------------------------

interface Part {
  sep: string;
  text: string;
}

function flipCase(text: string, mask: number): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    out += (mask >> (i % 16)) & 1 ? (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) : c;
  }
  return out;
}

function pctEncode(text: string, mask: number, lower: boolean): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '%' || !((mask >> (i % 16)) & 1)) {
      out += c;
      continue;
    }
    const hex = [...Buffer.from(c, 'utf8')]
      .map((b) => `%${b.toString(16).padStart(2, '0')}`)
      .join('');
    out += lower ? hex.toLowerCase() : hex.toUpperCase();
  }
  return out;
}

function applyMutation(parts: Part[], m: Mutation): void {
  if (parts.length === 0) parts.push({ sep: '/', text: '' });
  const i = m.at % parts.length;
  const part = parts[i] as Part;
  switch (m.op) {
    case 'case':
      part.text = flipCase(part.text, Number(m.arg));
      break;
    case 'pct':
      part.text = pctEncode(part.text, Number(m.arg), Number(m.arg) % 3 === 0);
      break;
    case 'pct2':
      part.text = pctEncode(part.text, Number(m.arg) | 1, false).replace(/%/g, '%25');
      break;
    case 'join': {
      const next = parts[i + 1];
      if (next === undefined) {
        part.text += m.arg;
      } else {
        part.text += m.arg + next.text;
        parts.splice(i + 1, 1);
      }
      break;
    }
    case 'insert':
      parts.splice(i, 0, { sep: '/', text: m.arg });
      break;
    case 'append':
      part.text += m.arg;
      break;
    case 'prepend':
      part.text = m.arg + part.text;
      break;
    case 'sep':
      part.sep = m.arg;
      break;
    case 'replace':
      part.text = m.arg;
      break;
    case 'unicode': {
      for (let k = 0; k < part.text.length; k++) {
        const options = LOOKALIKES[(part.text[k] as string).toLowerCase()];
        if (options === undefined) continue;
        const look = options[k % options.length] as string;
        const swapped = m.arg === 'raw' ? look : pctEncode(look, 0xffff, false);
        part.text = part.text.slice(0, k) + swapped + part.text.slice(k + 1);
        break;
      }
      break;
    }
    case 'long':
      if (m.arg === 'segments') {
        for (let k = 0; k < 200; k++) parts.splice(i + 1, 0, { sep: '/', text: 'x' });
      } else {
        const length = Number(m.arg);
        const seed = part.text === '' ? 'a' : part.text;
        part.text = seed.repeat(Math.ceil(length / seed.length)).slice(0, length);
      }
      break;
  }
}

/** The request target, exactly as sent. */
export function renderTarget(spec: RequestSpec): string {
  const parts: Part[] = spec.segments.map((text) => ({ sep: '/', text }));
  for (const m of spec.mutations) applyMutation(parts, m);
  let target = spec.authority + spec.prefix + parts.map((p) => p.sep + p.text).join('');
  if (target === '') target = '/';
  const decoy = placementQuery(spec.bypass);
  const search = decoy === '' ? spec.query : spec.query === null ? decoy : `${spec.query}&${decoy}`;
  if (search !== null) target += `?${search}`;
  if (spec.fragment !== null) target += `#${spec.fragment}`;
  return target;
}

/** The whole request, as bytes. */
export function renderRequest(spec: RequestSpec, id: string): Buffer {
  const headers = [...spec.headers, ...placementHeaders(spec.bypass)];
  return requestBytes(spec.method, renderTarget(spec), headers, id, spec.version);
}

/** A request head with our framing headers (`X-Fuzz-Id` first, so later headers cannot hide it). */
export function requestBytes(
  method: string,
  target: string,
  headers: readonly (readonly [string, string])[],
  id: string,
  version = 'HTTP/1.1',
): Buffer {
  const line = version === '' ? `${method} ${target}` : `${method} ${target} ${version}`;
  const head = [line, 'Host: x', `X-Fuzz-Id: ${id}`, 'Content-Length: 0', 'Connection: close'];
  for (const [k, v] of headers) head.push(`${k}: ${v}`);
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'utf8');
}

/** A copy-pasteable rendering of the bytes sent (non-printable bytes as `\xNN`). */
export function showBytes(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    if (b === 0x0d) out += '\\r';
    else if (b === 0x0a) out += '\\n\n';
    else if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}
