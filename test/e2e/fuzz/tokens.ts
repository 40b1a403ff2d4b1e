import { BypassKeys, mintBypassToken } from '../../../src/bypass/token.js';
import { BYPASS_SECRETS } from './world.js';

/**
 * Bypass tokens as a request carries them. A request spec holds only a description of each
 * token (what kind, for which namespace, where and how it is written), so that fast-check can
 * shrink it; the token itself is minted when the request is rendered.
 *
 * The oracle reads these descriptions, never the guard's verification: a token "opens" a
 * namespace when it is one the test minted with a secret the guard holds, unexpired, for that
 * namespace, and written into the request whole. Where it is written does not matter to the
 * oracle (a token in the query string or under a misspelt cookie name opens nothing in the
 * guard, but it would not open another namespace either): the property is about scope.
 */

export type TokenKind =
  /** Signed with the guard's signing secret, valid for a day. */
  | 'valid'
  /** Signed with the guard's second (previous) secret: valid too. */
  | 'rotated'
  /** Signed with the signing secret, expired an hour ago. */
  | 'expired'
  /** Signed with a secret the guard does not hold. */
  | 'foreign'
  /** A valid token with one character of its MAC changed. */
  | 'tampered'
  /** A valid token for another namespace with this namespace's name spliced in. */
  | 'forged'
  /** Signed properly, but for a name that is not a namespace key (`ACME/Sub`). */
  | 'unnormalised'
  /** Not a token. */
  | 'garbage';

export const TOKEN_KINDS: readonly TokenKind[] = [
  'valid',
  'rotated',
  'expired',
  'foreign',
  'tampered',
  'forged',
  'unnormalised',
  'garbage',
];

/** The kinds that open their namespace. */
export const VALID_KINDS: ReadonlySet<TokenKind> = new Set(['valid', 'rotated']);

export type Channel =
  /** `X-Namespace-Read-Only-Bypass` (any spelling of its name). */
  | 'header'
  /** A `nsro_bypass` cookie. */
  | 'cookie'
  /** Somewhere the guard must not look: the query, another header, another cookie name. */
  | 'decoy';

export interface Placement {
  readonly channel: Channel;
  readonly kind: TokenKind;
  /** The namespace the token names: a root namespace key or `*`. */
  readonly namespace: string;
  /** How it is written: an index into the channel's styles (taken modulo their number). */
  readonly style: number;
}

/** One way of writing a token into a channel. */
interface Style {
  /** Header lines (name, value) carrying `token`; a decoy may instead add to the query. */
  readonly lines: (token: string) => [string, string][];
  /** Query text to append (decoys only). */
  readonly query?: (token: string) => string;
  /** The token appears whole and delimited (not glued to other characters, not truncated). */
  readonly intact: boolean;
  /** A clean spelling every client may use: the guard must read the token from it. */
  readonly clean: boolean;
}

const HEADER = 'X-Namespace-Read-Only-Bypass';
const style = (
  lines: Style['lines'],
  intact: boolean,
  clean: boolean,
  query?: Style['query'],
): Style => (query === undefined ? { lines, intact, clean } : { lines, query, intact, clean });

export const HEADER_STYLES: readonly Style[] = [
  style((t) => [[HEADER, t]], true, true),
  style((t) => [['x-namespace-read-only-bypass', t]], true, true),
  style((t) => [['X-NAMESPACE-READ-ONLY-BYPASS', t]], true, true),
  style((t) => [[HEADER, ` ${t}\t`]], true, true),
  // Repeated: Node joins the values with `, `; the first one is the token.
  style((t) => [[HEADER, `${t}, garbage`]], true, false),
  style((t) => [[HEADER, `garbage, ${t}`]], true, false),
  style(
    (t) => [
      [HEADER, t],
      [HEADER, 'garbage'],
    ],
    true,
    false,
  ),
  style(
    (t) => [
      [HEADER, 'garbage'],
      [HEADER, t],
    ],
    true,
    false,
  ),
  style((t) => [[HEADER, `"${t}"`]], true, false),
  style((t) => [[HEADER, `${t};`]], true, false),
  style((t) => [[HEADER, `${t}x`]], false, false),
  style((t) => [[HEADER, `x${t}`]], false, false),
  style((t) => [[HEADER, t.slice(0, -1)]], false, false),
  style(() => [[HEADER, '']], false, false),
];

const COOKIE = 'nsro_bypass';
const cookie = (...values: string[]): [string, string][] => values.map((v) => ['Cookie', v]);

export const COOKIE_STYLES: readonly Style[] = [
  style((t) => cookie(`${COOKIE}=${t}`), true, true),
  style((t) => cookie(`session=abc; ${COOKIE}=${t}`), true, true),
  style((t) => cookie(`${COOKIE}=${t}; theme=dark`), true, true),
  style((t) => cookie(`a=b;${COOKIE}=${t}`), true, true),
  style((t) => cookie(`${COOKIE}="${t}"`), true, true),
  style((t) => cookie(` ${COOKIE} = ${t} `), true, true),
  // Two Cookie lines: Node joins them with `; `.
  style((t) => cookie('session=abc', `${COOKIE}=${t}`), true, true),
  // Malformed: what a browser would not send, or what must not read as the token.
  style((t) => cookie(`${COOKIE}=garbage; ${COOKIE}=${t}`), true, false),
  style((t) => cookie(`${COOKIE}; ${COOKIE}=${t}`), true, false),
  style((t) => cookie(`${COOKIE}=; ${COOKIE}=${t}`), true, false),
  style((t) => cookie(`;;${COOKIE}=${t};;`), true, false),
  style((t) => cookie(`${COOKIE}="${t}`), true, false),
  style((t) => cookie(`${COOKIE}=${t}"`), true, false),
  style((t) => cookie(`${COOKIE}=${t},x=1`), true, false),
  style((t) => cookie(`${COOKIE}=${t} ${t}`), true, false),
  style((t) => cookie(`${COOKIE}=\\${t}`), true, false),
  style((t) => cookie(`${COOKIE}==${t}`), true, false),
  style((t) => cookie(`${COOKIE}=${t}x`), false, false),
  style((t) => cookie(`${COOKIE}=${t.slice(0, -1)}`), false, false),
  style(() => cookie(COOKIE), false, false),
  style(() => cookie(`${COOKIE}=`), false, false),
];

export const DECOY_STYLES: readonly Style[] = [
  style((t) => [['X-Namespace-Read-Only-Bypas', t]], true, false),
  style((t) => [['X-Nsro-Bypass', t]], true, false),
  style((t) => [['Authorization', `Bearer ${t}`]], true, false),
  style((t) => [['X-Namespace-Read-Only-Bypass-Token', t]], true, false),
  style((t) => cookie(`NSRO_BYPASS=${t}`), true, false),
  style((t) => cookie(`nsro_bypass2=${t}`), true, false),
  style((t) => cookie(`xnsro_bypass=${t}`), true, false),
  style((t) => cookie(`nsro-bypass=${t}`), true, false),
  style(
    () => [],
    true,
    false,
    (t) => `${COOKIE}=${t}`,
  ),
  style(
    () => [],
    true,
    false,
    (t) => `${HEADER}=${t}`,
  ),
];

const STYLES: Readonly<Record<Channel, readonly Style[]>> = {
  header: HEADER_STYLES,
  cookie: COOKIE_STYLES,
  decoy: DECOY_STYLES,
};

export function styleOf(p: Placement): Style {
  const styles = STYLES[p.channel];
  return styles[p.style % styles.length] as Style;
}

// --- minting -----------------------------------------------------------------------------------

const DAY = 24 * 3_600_000;
/** Tokens are minted relative to the moment this module loaded: valid ones for a day. */
const EPOCH = Date.now();
const SIGNING = new BypassKeys(BYPASS_SECRETS[0]);
const PREVIOUS = new BypassKeys(BYPASS_SECRETS[1]);
const STRANGER = new BypassKeys('a-secret-the-guard-has-never-heard-of!!');

const GARBAGE = [
  'garbage',
  'v1',
  'v1...',
  'v1.YWNtZQ.zzzzzzzzzzz.',
  `v1.YWNtZQ.${'z'.repeat(11)}.${'A'.repeat(43)}`,
  `v1.${'A'.repeat(2000)}.1.${'A'.repeat(43)}`,
  'V1.YWNtZQ.1.AAAA',
  '%76%31.YWNtZQ',
  'null',
  'undefined',
  '*',
];

const minted = new Map<string, string>();

/** The text of the token a placement describes (minted once per process, then reused). */
export function tokenText(kind: TokenKind, namespace: string): string {
  const key = `${kind}\u0000${namespace}`;
  let text = minted.get(key);
  if (text === undefined) {
    text = mint(kind, namespace);
    minted.set(key, text);
  }
  return text;
}

function mint(kind: TokenKind, namespace: string): string {
  switch (kind) {
    case 'valid':
      return mintBypassToken(SIGNING, namespace, DAY, EPOCH);
    case 'rotated':
      return mintBypassToken(PREVIOUS, namespace, DAY, EPOCH);
    case 'expired':
      return mintBypassToken(SIGNING, namespace, 1000, EPOCH - 3_600_000);
    case 'foreign':
      return mintBypassToken(STRANGER, namespace, DAY, EPOCH);
    case 'tampered': {
      const good = tokenText('valid', namespace);
      return `${good.slice(0, -1)}${good.endsWith('A') ? 'B' : 'A'}`;
    }
    case 'forged': {
      // A valid token for a namespace the holder may write to, renamed.
      const donor = tokenText('valid', namespace === 'open' ? 'free' : 'open');
      const name = Buffer.from(namespace, 'latin1').toString('base64url');
      return donor.replace(/^v1\.[^.]+/, `v1.${name}`);
    }
    case 'unnormalised':
      return mintBypassToken(SIGNING, `${namespace.toUpperCase()}/Sub`, DAY, EPOCH);
    case 'garbage': {
      let hash = 0;
      for (const c of namespace) hash = (hash * 31 + (c.codePointAt(0) ?? 0)) >>> 0;
      return GARBAGE[hash % GARBAGE.length] as string;
    }
  }
}

// --- rendering and reading ---------------------------------------------------------------------

/** The header lines the placements add. */
export function placementHeaders(placements: readonly Placement[]): [string, string][] {
  return placements.flatMap((p) => styleOf(p).lines(tokenText(p.kind, p.namespace)));
}

/** Query text the placements add (`''` when none). */
export function placementQuery(placements: readonly Placement[]): string {
  const parts: string[] = [];
  for (const p of placements) {
    const q = styleOf(p).query?.(tokenText(p.kind, p.namespace));
    if (q !== undefined) parts.push(q);
  }
  return parts.join('&');
}

/**
 * The namespaces (and `*`) that some token the request carries, whole, validly opens: what the
 * oracle lets a write through for. Generous on purpose: wherever the token is written.
 */
export function openedBy(placements: readonly Placement[]): Set<string> {
  const out = new Set<string>();
  for (const p of placements) {
    if (VALID_KINDS.has(p.kind) && styleOf(p).intact) out.add(p.namespace);
  }
  return out;
}

/**
 * The namespace the guard is documented to open for this request: the header's token when the
 * request has one, else the cookie's; `null` when that token is not valid. Only asked of requests
 * whose placements are all clean (`cleanPlacements`).
 */
export function documentedGrant(placements: readonly Placement[]): string | null {
  const chosen =
    placements.find((p) => p.channel === 'header') ??
    placements.find((p) => p.channel === 'cookie');
  if (chosen === undefined || !VALID_KINDS.has(chosen.kind)) return null;
  return chosen.namespace;
}

/** At most one header and one cookie, each spelled cleanly, and no decoy. */
export function cleanPlacements(placements: readonly Placement[]): boolean {
  const headers = placements.filter((p) => p.channel === 'header');
  const cookies = placements.filter((p) => p.channel === 'cookie');
  return (
    headers.length <= 1 &&
    cookies.length <= 1 &&
    headers.length + cookies.length === placements.length &&
    placements.every((p) => styleOf(p).clean)
  );
}
