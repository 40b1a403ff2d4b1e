import { createHmac, timingSafeEqual } from 'node:crypto';
import { OptionsError, Redacted } from '../errors.js';
import { namespaceKey } from '../request/namespace-name.js';
import { INSTANCE } from '../state/values.js';

/**
 * The scoped bypass token: lets the team doing a migration write to the one root namespace (or,
 * as `*`, through the instance state) that everyone else finds read-only, until it expires.
 *
 *   v1.<base64url namespace>.<expiry, ms since the epoch, base36>.<base64url HMAC-SHA256>
 *
 * The MAC covers everything before its dot, with a key derived from the secret for this use only
 * (a secret that also signs something else cannot be made to sign a token). Every character is
 * URL- and cookie-safe. Nothing here logs, and no message ever carries a token or a secret.
 */

/**
 * Shortest secret accepted. 32 random characters carry 128 bits or more (hex, base64), and a
 * secret a person chose is rarely that long; a short one could be guessed offline from a token.
 */
export const MIN_SECRET_LENGTH = 32;

/** Longest `ttl`: one year. A token cannot be revoked short of rotating the secret. */
export const MAX_TTL = 365 * 24 * 3_600_000;

/** Longest string `verifyBypassToken` looks at; a real token has at most 399 characters. */
export const MAX_TOKEN_LENGTH = 1024;

/** The derived key's purpose, mixed into it: changing it invalidates every token. */
const KEY_CONTEXT = 'namespace-read-only bypass token v1';

/**
 * `v1.<namespace>.<expiry>.<mac>`. Dots separate parts no part may contain, so the match is
 * linear; a namespace is at most 255 characters (340 in base64url), a MAC 32 bytes (43).
 */
const TOKEN = /^(v1\.([A-Za-z0-9_-]{1,340})\.([0-9a-z]{1,11}))\.([A-Za-z0-9_-]{43})$/;

export interface BypassTokenOptions {
  /**
   * The secret, at least 32 characters. An array (the guard's `bypass.secret` as it is) signs
   * with its first entry.
   */
  secret: string | readonly string[];
  /** The namespace the token opens: any spelling of it (`'Acme/Team'` is `acme`), or `'*'`. */
  namespace: string;
  /** Milliseconds the token is valid for, a whole number from 1 to one year. */
  ttl: number;
}

/** What a valid token grants. The caller compares `namespace` with the one it guards. */
export interface BypassGrant {
  /** The root namespace, lower-cased, or `*` for the instance state. */
  readonly namespace: string;
  /** Milliseconds since the epoch; the token is valid strictly before. */
  readonly expiresAt: number;
}

/**
 * The guard's bypass secrets, checked once and turned into keys: every one verifies, the first
 * signs (rotation). The keys are private fields, so inspecting or logging the object shows none.
 */
export class BypassKeys {
  readonly #keys: readonly Buffer[];

  constructor(secret: unknown, option = 'bypass.secret', owner = 'option') {
    if (!Array.isArray(secret)) {
      this.#keys = [deriveKey(checkedSecret(secret, option, owner, SECRET_EXPECTED))];
      return;
    }
    if (secret.length === 0) {
      throw new OptionsError(option, SECRET_EXPECTED, new Redacted('an empty array'), owner);
    }
    this.#keys = secret.map((s, i) =>
      deriveKey(checkedSecret(s, `${option}[${i}]`, owner, SECRET_ENTRY_EXPECTED)),
    );
  }

  /** The MAC of `signed` with the signing key (the first secret's). */
  sign(signed: string): string {
    return mac(this.#keys[0] as Buffer, signed);
  }

  /** True when `given` is the MAC of `signed` under any of the keys. */
  verifies(signed: string, given: string): boolean {
    return signedByAny(this.#keys, signed, given);
  }
}

/** `new BypassKeys(secret, option)`: the guard's `bypass.secret`, validated once. */
export function bypassKeys(secret: unknown, option = 'bypass.secret'): BypassKeys {
  return new BypassKeys(secret, option);
}

/**
 * The guard's whole `bypass` option (`{ secret }`), or `undefined` without one. Unknown keys are
 * refused without showing their values, which may well be a misspelt secret.
 */
export function bypassOption(value: unknown, option = 'bypass'): BypassKeys | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OptionsError(option, 'an object { secret }', redact(value));
  }
  for (const key of Object.keys(value)) {
    if (key !== 'secret') {
      throw new OptionsError(
        `${option}.${key}`,
        'absent (the only key of `bypass` is `secret`)',
        new Redacted('a value (not shown)'),
      );
    }
  }
  return new BypassKeys((value as { secret?: unknown }).secret, `${option}.secret`);
}

const CREATE_OWNER = 'createBypassToken() option';

/**
 * A token that lets requests write to `namespace` while it is in maintenance, for `ttl` ms from
 * now. Throws `OptionsError` (`ERR_NSRO_OPTION`) naming the bad option; the message never shows
 * the secret.
 */
export function createBypassToken(options: BypassTokenOptions): string {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new OptionsError(
      'options',
      'an object { secret, namespace, ttl }',
      options,
      'createBypassToken()',
    );
  }
  for (const key of Object.keys(options)) {
    if (key !== 'secret' && key !== 'namespace' && key !== 'ttl') {
      throw new OptionsError(
        key,
        'absent (the options are `secret`, `namespace` and `ttl`)',
        new Redacted('a value (not shown)'),
        CREATE_OWNER,
      );
    }
  }
  const keys = new BypassKeys(options.secret, 'secret', CREATE_OWNER);
  return mintBypassToken(
    keys,
    tokenNamespace(options.namespace),
    checkedTtl(options.ttl),
    Date.now(),
  );
}

/** The store key a token for `namespace` names (`'Acme/Team'` is `acme`). */
function tokenNamespace(namespace: unknown): string {
  try {
    return namespaceKey(namespace);
  } catch {
    throw new OptionsError(
      'namespace',
      "a namespace name such as 'acme' or 'acme/team', or '*' for the instance",
      namespace,
      CREATE_OWNER,
    );
  }
}

function checkedTtl(ttl: unknown): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL) {
    throw new OptionsError(
      'ttl',
      `a whole number of milliseconds from 1 to ${MAX_TTL} (one year)`,
      ttl,
      CREATE_OWNER,
    );
  }
  return ttl;
}

/** The token for a namespace key and a ttl already checked, signed with the signing key. */
export function mintBypassToken(
  keys: BypassKeys,
  namespace: string,
  ttl: number,
  now: number,
): string {
  const signed = `v1.${Buffer.from(namespace, 'latin1').toString('base64url')}.${(now + ttl).toString(36)}`;
  return `${signed}.${keys.sign(signed)}`;
}

/**
 * What `token` grants, or `null` when it is not a token (any string, of any length), was not
 * signed by one of `secrets`, or has expired at `now`. Never throws. `secrets` is a `BypassKeys`
 * (precomputed: what the guard holds) or the raw secrets, derived on each call.
 */
export function verifyBypassToken(
  token: string,
  secrets: readonly Buffer[] | BypassKeys,
  now: number,
): BypassGrant | null {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return null;
  const parts = TOKEN.exec(token);
  if (parts === null) return null;
  const [, signed = '', encodedNamespace = '', expiry = '', given = ''] = parts;

  let valid: boolean;
  try {
    valid =
      secrets instanceof BypassKeys
        ? secrets.verifies(signed, given)
        : signedByAny(secrets.map(deriveKey), signed, given);
  } catch {
    return null; // raw secrets that are not secrets
  }
  if (!valid) return null;

  const expiresAt = Number.parseInt(expiry, 36);
  // A NaN or otherwise odd `now` fails closed.
  if (!Number.isSafeInteger(expiresAt) || !(expiresAt > now)) return null;
  const namespace = Buffer.from(encodedNamespace, 'base64url').toString('latin1');
  if (namespace !== INSTANCE && !isNamespaceKey(namespace)) return null;
  return { namespace, expiresAt };
}

/**
 * True when `given` is the MAC of `signed` under one of `keys`. Every key is tried, matched or
 * not, and compared in constant time: how long a check takes says nothing about how much of a
 * forged MAC was right.
 */
function signedByAny(keys: readonly Buffer[], signed: string, given: string): boolean {
  const presented = Buffer.from(given, 'latin1');
  let valid = false;
  for (const key of keys) {
    const expected = Buffer.from(mac(key, signed), 'latin1');
    if (expected.length === presented.length && timingSafeEqual(expected, presented)) valid = true;
  }
  return valid;
}

/** True when `name` is a root namespace key as `namespaceKey` makes one. */
function isNamespaceKey(name: string): boolean {
  try {
    return namespaceKey(name) === name;
  } catch {
    return false;
  }
}

/**
 * The MAC of `signed`, base64url. Compared as text: a base64url string of 32 bytes has spare
 * bits, so comparing decoded bytes would accept more than one spelling of the same MAC.
 */
function mac(key: Buffer, signed: string): string {
  return createHmac('sha256', key).update(signed, 'latin1').digest('base64url');
}

function deriveKey(secret: string | Buffer): Buffer {
  return createHmac('sha256', secret).update(KEY_CONTEXT).digest();
}

const SECRET_ENTRY_EXPECTED = `a string of at least ${MIN_SECRET_LENGTH} characters`;
const SECRET_EXPECTED = `${SECRET_ENTRY_EXPECTED} (e.g. from \`openssl rand -base64 32\`) or a non-empty array of them, the first signing`;

function checkedSecret(secret: unknown, option: string, owner: string, expected: string): string {
  if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) {
    throw new OptionsError(option, expected, redact(secret), owner);
  }
  return secret;
}

/** A received secret as a message may show it: its kind and length, never its characters. */
function redact(value: unknown): unknown {
  if (typeof value === 'string') {
    return new Redacted(
      value.length === 0 ? 'an empty string' : `a string of ${value.length} characters (not shown)`,
    );
  }
  if (typeof value === 'number' || typeof value === 'bigint')
    return new Redacted(`a ${typeof value}`);
  return value;
}
