import * as crypto from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  BypassKeys,
  bypassKeys,
  bypassOption,
  MAX_TOKEN_LENGTH,
  MAX_TTL,
  mintBypassToken,
  verifyBypassToken,
} from '../../src/bypass/token.js';
import { type BypassTokenOptions, createBypassToken, OptionsError } from '../../src/index.js';

vi.mock('node:crypto', { spy: true });

/**
 * The bypass token on its own: minting, verifying (scope, expiry, tampering, foreign secrets,
 * rotation, garbage) and the validation of the secret option. The guard's use of it is tested
 * with the guard.
 */

const SECRET = 'first-secret-0123456789abcdefghijklmnop';
const OLD = 'older-secret-0123456789abcdefghijklmnop';
const OTHER = 'other-secret-0123456789abcdefghijklmnop';
const MINUTE = 60_000;

const keys = (...secrets: string[]) => bypassKeys(secrets);
const token = (namespace: string, ttl = 30 * MINUTE, secret = SECRET) =>
  createBypassToken({ secret, namespace, ttl });

/** The token with part `index` (0 version, 1 namespace, 2 expiry, 3 mac) replaced. */
function withPart(t: string, index: number, part: string): string {
  const parts = t.split('.');
  parts[index] = part;
  return parts.join('.');
}

/** `text` with its character at `i` changed to another of the same alphabet. */
function flip(text: string, i: number): string {
  const c = text[i];
  return `${text.slice(0, i)}${c === 'A' ? 'B' : 'A'}${text.slice(i + 1)}`;
}

/** The OptionsError `fn` throws. */
function optionsError(fn: () => unknown): OptionsError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(OptionsError);
    return error as OptionsError;
  }
  throw new Error('no error');
}

afterEach(() => {
  vi.clearAllMocks();
});

describe('createBypassToken and verifyBypassToken', () => {
  it('round trip: the token verifies for its namespace, until its expiry', () => {
    const before = Date.now();
    const t = token('acme');
    const after = Date.now();
    const grant = verifyBypassToken(t, keys(SECRET), Date.now());
    expect(grant).toEqual({ namespace: 'acme', expiresAt: expect.any(Number) });
    expect(grant?.expiresAt).toBeGreaterThanOrEqual(before + 30 * MINUTE);
    expect(grant?.expiresAt).toBeLessThanOrEqual(after + 30 * MINUTE);
  });

  it('has the documented, URL- and cookie-safe shape, the expiry in base36', () => {
    const t = mintBypassToken(keys(SECRET), 'acme', 1000, 1_700_000_000_000);
    expect(t).toMatch(/^v1\.YWNtZQ\.[0-9a-z]+\.[A-Za-z0-9_-]{43}$/);
    expect(t.split('.')[2]).toBe((1_700_000_001_000).toString(36));
    expect(encodeURIComponent(t)).toBe(t);
  });

  it('the MAC is HMAC-SHA256 over everything before it, with a key derived from the secret', () => {
    const t = mintBypassToken(keys(SECRET), 'acme', 1000, 1_700_000_000_000);
    const signed = t.slice(0, t.lastIndexOf('.'));
    const key = crypto
      .createHmac('sha256', SECRET)
      .update('namespace-read-only bypass token v1')
      .digest();
    expect(t).toBe(
      `${signed}.${crypto.createHmac('sha256', key).update(signed).digest('base64url')}`,
    );
  });

  it('a token for acme names acme, and nothing else (the caller compares)', () => {
    const grant = verifyBypassToken(token('acme'), keys(SECRET), Date.now());
    expect(grant?.namespace).toBe('acme');
    expect(grant?.namespace).not.toBe('acme2');
    expect(grant?.namespace).not.toBe('*');
  });

  it("names the lower-cased root namespace: 'Acme/Team' is acme", () => {
    expect(verifyBypassToken(token('Acme/Team'), keys(SECRET), Date.now())?.namespace).toBe('acme');
    expect(token('Acme/Team').split('.')[1]).toBe(token('acme').split('.')[1]);
  });

  it("'*' is the instance", () => {
    expect(verifyBypassToken(token('*'), keys(SECRET), Date.now())?.namespace).toBe('*');
  });

  it('expires: valid strictly before expiresAt, null from it on', () => {
    const now = 1_700_000_000_000;
    const t = mintBypassToken(keys(SECRET), 'acme', 30 * MINUTE, now);
    const end = now + 30 * MINUTE;
    expect(verifyBypassToken(t, keys(SECRET), now)).toEqual({ namespace: 'acme', expiresAt: end });
    expect(verifyBypassToken(t, keys(SECRET), end - 1)).not.toBeNull();
    expect(verifyBypassToken(t, keys(SECRET), end)).toBeNull();
    expect(verifyBypassToken(t, keys(SECRET), end + 86_400_000)).toBeNull();
  });

  it('a `now` that is not a number fails closed', () => {
    expect(verifyBypassToken(token('acme'), keys(SECRET), Number.NaN)).toBeNull();
  });

  it('takes the raw secrets as Buffers too', () => {
    const t = token('acme');
    expect(verifyBypassToken(t, [Buffer.from(SECRET)], Date.now())?.namespace).toBe('acme');
    expect(verifyBypassToken(t, [Buffer.from(OTHER)], Date.now())).toBeNull();
    expect(verifyBypassToken(t, [], Date.now())).toBeNull();
  });
});

describe('tampering', () => {
  const now = 1_700_000_000_000;
  const t = mintBypassToken(keys(SECRET), 'acme', 30 * MINUTE, now);
  const other = mintBypassToken(keys(SECRET), 'beta', 30 * MINUTE, now);

  it.each([
    ['another namespace', withPart(t, 1, Buffer.from('beta').toString('base64url'))],
    ['the instance', withPart(t, 1, Buffer.from('*').toString('base64url'))],
    ['the upper-cased namespace', withPart(t, 1, Buffer.from('ACME').toString('base64url'))],
    ["another token's namespace", withPart(t, 1, other.split('.')[1] as string)],
    ['a later expiry', withPart(t, 2, (now + 365 * 86_400_000).toString(36))],
    ['an expiry with a leading zero', withPart(t, 2, `0${t.split('.')[2]}`)],
    ['another version', withPart(t, 0, 'v2')],
    ['an upper-case version', withPart(t, 0, 'V1')],
    ['no version', t.slice(3)],
    ["another token's MAC", withPart(t, 3, other.split('.')[3] as string)],
    ['a MAC with its first character changed', withPart(t, 3, flip(t.split('.')[3] as string, 0))],
    // The last base64url character of 32 bytes carries 2 spare bits: text is compared, not bytes.
    ['a MAC with its last character changed', withPart(t, 3, flip(t.split('.')[3] as string, 42))],
    ['a truncated MAC', t.slice(0, -1)],
    ['a MAC one character longer', `${t}A`],
    [
      'a MAC in standard base64',
      withPart(t, 3, Buffer.from(t.split('.')[3] as string, 'base64url').toString('base64')),
    ],
    ['an extra part', `${t}.x`],
    ['an empty MAC', withPart(t, 3, '')],
    ['padding', `${t}=`],
    ['whitespace around', ` ${t} `],
    ['a trailing newline', `${t}\n`],
  ])('%s: null', (_name, forged) => {
    expect(forged).not.toBe(t);
    expect(verifyBypassToken(forged, keys(SECRET), now)).toBeNull();
  });

  it('the untouched token still verifies', () => {
    expect(verifyBypassToken(t, keys(SECRET), now)).not.toBeNull();
  });

  it('a token signed by another secret: null', () => {
    const foreign = mintBypassToken(keys(OTHER), 'acme', 30 * MINUTE, now);
    expect(verifyBypassToken(foreign, keys(SECRET), now)).toBeNull();
    expect(verifyBypassToken(t, keys(OTHER), now)).toBeNull();
  });

  it('a MAC keyed with the secret itself, not the derived key: null', () => {
    const signed = t.slice(0, t.lastIndexOf('.'));
    const raw = crypto.createHmac('sha256', SECRET).update(signed).digest('base64url');
    expect(verifyBypassToken(`${signed}.${raw}`, keys(SECRET), now)).toBeNull();
  });

  it('a well-signed token whose namespace is not a root namespace key: null', () => {
    for (const name of ['Acme', 'acme/team', 'a b', '', '..']) {
      const signed = `v1.${Buffer.from(name).toString('base64url')}.${(now + MINUTE).toString(36)}`;
      const forged = `${signed}.${keys(SECRET).sign(signed)}`;
      expect(verifyBypassToken(forged, keys(SECRET), now)).toBeNull();
    }
  });

  it('compares MACs with timingSafeEqual, trying every key', () => {
    vi.mocked(crypto.timingSafeEqual).mockClear();
    expect(verifyBypassToken(t, keys(SECRET, OLD, OTHER), now)).not.toBeNull();
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(3);
    vi.mocked(crypto.timingSafeEqual).mockClear();
    expect(verifyBypassToken(flip(t, t.length - 1), keys(SECRET, OLD), now)).toBeNull();
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(2);
  });
});

describe('rotation: every secret verifies, the first signs', () => {
  it('a token signed with the old secret verifies with [new, old]', () => {
    const old = token('acme', MINUTE, OLD);
    expect(verifyBypassToken(old, keys(SECRET, OLD), Date.now())?.namespace).toBe('acme');
    expect(verifyBypassToken(old, keys(SECRET), Date.now())).toBeNull();
  });

  it('a token from createBypassToken({ secret: new }) verifies with [new, old]', () => {
    const fresh = token('acme', MINUTE, SECRET);
    expect(verifyBypassToken(fresh, keys(SECRET, OLD), Date.now())?.namespace).toBe('acme');
    expect(verifyBypassToken(fresh, keys(OLD), Date.now())).toBeNull();
  });

  it('createBypassToken with the array signs with its first entry', () => {
    const t = createBypassToken({ secret: [SECRET, OLD], namespace: 'acme', ttl: MINUTE });
    expect(verifyBypassToken(t, keys(SECRET), Date.now())).not.toBeNull();
    expect(verifyBypassToken(t, keys(OLD), Date.now())).toBeNull();
  });

  it('keys sign with the first secret', () => {
    const t = mintBypassToken(keys(SECRET, OLD), 'acme', MINUTE, Date.now());
    expect(verifyBypassToken(t, keys(SECRET), Date.now())).not.toBeNull();
    expect(verifyBypassToken(t, keys(OLD), Date.now())).toBeNull();
  });
});

describe('garbage in: null, never a throw', () => {
  const k = keys(SECRET);
  const valid = token('acme');
  const garbage: [string, unknown][] = [
    ['empty', ''],
    ['a dot', '.'],
    ['only dots', '...'],
    ['many dots', '.'.repeat(10_000)],
    ['many parts', 'v1.'.repeat(300)],
    ['huge', 'a'.repeat(10_000_000)],
    ['a huge valid-looking token', `v1.${'A'.repeat(2000)}.1.${'A'.repeat(43)}`],
    ['a token padded past the cap', `${valid}${'A'.repeat(MAX_TOKEN_LENGTH)}`],
    ['unicode', 'v1.😀.ü.ñ'],
    ['unicode in the MAC', withPart(valid, 3, `${'é'.repeat(43)}`)],
    ['lone surrogates', '\ud800\udfff\ud800'],
    ['NUL bytes', '\0'.repeat(100)],
    ['a JWT', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl'],
    ['an expiry past any date', withPart(valid, 2, 'zzzzzzzzzzz')],
    ['a number', 42],
    ['undefined', undefined],
    ['null', null],
    ['an object', { toString: () => valid }],
  ];

  it.each(garbage)('%s', (_name, input) => {
    expect(() => verifyBypassToken(input as string, k, Date.now())).not.toThrow();
    expect(verifyBypassToken(input as string, k, Date.now())).toBeNull();
  });

  it('the cap is checked before anything else: no HMAC for an oversized string', () => {
    vi.mocked(crypto.createHmac).mockClear();
    verifyBypassToken('a'.repeat(MAX_TOKEN_LENGTH + 1), k, Date.now());
    verifyBypassToken('not a token', k, Date.now());
    expect(crypto.createHmac).not.toHaveBeenCalled();
  });

  it('raw secrets that are not secrets: null, not a throw', () => {
    expect(verifyBypassToken(valid, [null as unknown as Buffer], Date.now())).toBeNull();
  });
});

describe('createBypassToken arguments', () => {
  const create = (options: unknown) => () => createBypassToken(options as BypassTokenOptions);

  it.each<[string, unknown, string]>([
    ['no options', undefined, 'options'],
    ['an array', [], 'options'],
    ['no secret', { namespace: 'acme', ttl: MINUTE }, 'secret'],
    ['a short secret', { secret: 'x'.repeat(31), namespace: 'acme', ttl: MINUTE }, 'secret'],
    ['an empty secret', { secret: '', namespace: 'acme', ttl: MINUTE }, 'secret'],
    ['a Buffer secret', { secret: Buffer.from(SECRET), namespace: 'acme', ttl: MINUTE }, 'secret'],
    ['an empty secret array', { secret: [], namespace: 'acme', ttl: MINUTE }, 'secret'],
    [
      'a short second secret',
      { secret: [SECRET, 'short'], namespace: 'acme', ttl: MINUTE },
      'secret[1]',
    ],
    ['no namespace', { secret: SECRET, ttl: MINUTE }, 'namespace'],
    ['an invalid namespace', { secret: SECRET, namespace: 'a b', ttl: MINUTE }, 'namespace'],
    ['an empty namespace', { secret: SECRET, namespace: '', ttl: MINUTE }, 'namespace'],
    ['a dot segment', { secret: SECRET, namespace: '..', ttl: MINUTE }, 'namespace'],
    ['no ttl', { secret: SECRET, namespace: 'acme' }, 'ttl'],
    ['a zero ttl', { secret: SECRET, namespace: 'acme', ttl: 0 }, 'ttl'],
    ['a negative ttl', { secret: SECRET, namespace: 'acme', ttl: -1 }, 'ttl'],
    ['a fractional ttl', { secret: SECRET, namespace: 'acme', ttl: 1.5 }, 'ttl'],
    ['a ttl in a string', { secret: SECRET, namespace: 'acme', ttl: '30m' }, 'ttl'],
    [
      'an infinite ttl',
      { secret: SECRET, namespace: 'acme', ttl: Number.POSITIVE_INFINITY },
      'ttl',
    ],
    ['a ttl over a year', { secret: SECRET, namespace: 'acme', ttl: MAX_TTL + 1 }, 'ttl'],
    ['an unknown key', { secret: SECRET, namespace: 'acme', ttl: MINUTE, expires: 1 }, 'expires'],
  ])('%s: OptionsError naming `%s`', (_name, options, option) => {
    const error = optionsError(create(options));
    expect(error.code).toBe('ERR_NSRO_OPTION');
    expect(error.option).toBe(option);
    expect(error.message).toContain(`\`${option}\``);
  });

  it('a ttl of exactly one year is accepted', () => {
    expect(create({ secret: SECRET, namespace: 'acme', ttl: MAX_TTL })()).toMatch(/^v1\./);
  });

  it('a message never shows a secret, however it was passed', () => {
    const short = 'short-but-secret-value';
    for (const options of [
      { secret: short, namespace: 'acme', ttl: MINUTE },
      { secret: [SECRET, short], namespace: 'acme', ttl: MINUTE },
      { secrte: SECRET, namespace: 'acme', ttl: MINUTE },
      { secret: SECRET, namespace: 'a b', ttl: 0 },
      { secret: SECRET, namespace: 'acme', ttl: 0 },
    ]) {
      const error = optionsError(create(options));
      expect(error.message).not.toContain(short);
      expect(error.message).not.toContain(SECRET);
    }
    expect(optionsError(create({ secret: short, namespace: 'acme', ttl: MINUTE })).message).toBe(
      'namespace-read-only: createBypassToken() option `secret` must be a string of at least 32 characters (e.g. from `openssl rand -base64 32`) or a non-empty array of them, the first signing; received a string of 22 characters (not shown)',
    );
  });
});

describe('the guard option: bypassKeys and bypassOption', () => {
  it('accepts a string or a non-empty array of strings of 32 characters or more', () => {
    expect(bypassKeys(SECRET)).toBeInstanceOf(BypassKeys);
    expect(bypassKeys([SECRET, OLD])).toBeInstanceOf(BypassKeys);
    expect(bypassKeys('x'.repeat(32))).toBeInstanceOf(BypassKeys);
  });

  it.each<[string, unknown, string]>([
    ['undefined', undefined, 'bypass.secret'],
    ['a short string', 'x'.repeat(31), 'bypass.secret'],
    ['an empty array', [], 'bypass.secret'],
    ['a number', 42, 'bypass.secret'],
    ['a short second entry', [SECRET, 'short'], 'bypass.secret[1]'],
    ['a non-string entry', [SECRET, OLD, 7], 'bypass.secret[2]'],
  ])('%s: OptionsError naming `%s`', (_name, secret, option) => {
    const error = optionsError(() => bypassKeys(secret));
    expect(error.option).toBe(option);
    expect(error.message).toMatch(
      new RegExp(`^namespace-read-only: option \`${option.replace(/[[\]]/g, '\\$&')}\` must be `),
    );
  });

  it('bypassOption checks the whole `bypass` object, hiding values', () => {
    expect(bypassOption(undefined)).toBeUndefined();
    expect(bypassOption({ secret: SECRET })).toBeInstanceOf(BypassKeys);
    expect(optionsError(() => bypassOption(SECRET)).option).toBe('bypass');
    expect(optionsError(() => bypassOption(SECRET)).message).not.toContain(SECRET);
    expect(optionsError(() => bypassOption(null)).option).toBe('bypass');
    expect(optionsError(() => bypassOption({})).option).toBe('bypass.secret');
    const misspelt = optionsError(() => bypassOption({ secrets: [SECRET] }));
    expect(misspelt.option).toBe('bypass.secrets');
    expect(misspelt.message).not.toContain(SECRET);
    expect(optionsError(() => bypassOption({ secret: [SECRET, 'x'] })).option).toBe(
      'bypass.secret[1]',
    );
  });

  it('inspecting or serialising the keys shows no key and no secret', () => {
    const k = bypassKeys([SECRET, OLD]);
    expect(inspect(k, { showHidden: true, depth: 5 })).not.toMatch(/secret|[0-9a-f]{16}/i);
    expect(JSON.stringify({ k })).toBe('{"k":{}}');
  });
});
