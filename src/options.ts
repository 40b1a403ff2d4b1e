import type { IncomingMessage, ServerResponse } from 'node:http';
import { type BypassKeys, bypassOption } from './bypass/token.js';
import { OptionsError, type RefusalCode, type RefusalReason } from './errors.js';
import type { NextFunction } from './guard/pipeline.js';
import { type Logger, resolveLogger } from './logger.js';
import { type MetricsConfig, type MetricsOptions, metricsOption } from './observe/metrics.js';
import { type AllowlistMatch, type AllowRule, compileAllowlist } from './routing/allowlist.js';
import { gitlabAllowlist } from './routing/gitlab-allowlist.js';
import { gitlabRoutes } from './routing/gitlab-routes.js';
import { patternRoutes } from './routing/pattern-routes.js';
import type { IdKind, NamespaceRoutes } from './routing/target.js';
import type { NamespaceState } from './state/values.js';
import { MemoryStateStore } from './stores/memory.js';
import type { StateStore } from './stores/store.js';

/**
 * The guard's options, validated once into a `Config`, and the checks every options object in
 * this library uses (unknown keys rejected with a did-you-mean, errors that name the option).
 */

/** Maps a numeric REST API id to a full path (`'acme/team/proj'`), or `null` when none exists. */
export type ResolveId = (
  kind: IdKind,
  id: string,
) => string | null | undefined | Promise<string | null | undefined>;

/**
 * Generic over the request and response types the callbacks take, so that callbacks typed with
 * Express's `Request` and `Response` (4 or 5) compile: `namespaceReadOnly({ skip: (req: Request)
 * => ... })` infers them.
 */
export interface NamespaceReadOnlyOptions<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> {
  /** Where states live. Default: a new `MemoryStateStore`. */
  store?: StateStore;
  /**
   * How a request path names a namespace: `gitlabRoutes()` (default), a `NamespaceRoutes`
   * object, or path-to-regexp v8 patterns with a `namespace` parameter.
   */
  routes?: NamespaceRoutes | readonly string[];
  /** Writes that pass even in maintenance. Default: `gitlabAllowlist()`. `[]` allows none. */
  allowlist?: readonly AllowRule[];
  /** The prefix the app is served under (e.g. `/gitlab`), matched like an Express mount. Default `''`. */
  relativeUrlRoot?: string;
  /**
   * Maps numeric API ids to full paths. Without it a write addressed by numeric id cannot be
   * attributed to a namespace: it is refused while some namespace is in maintenance (and passes
   * while none is). Pass `() => null` to let such writes through always.
   */
  resolveId?: ResolveId;
  /** Seconds for `Retry-After` when the state has no `until` and no TTL. Default `900`. */
  retryAfter?: number;
  /** When the state cannot be read: `'closed'` (default) blocks the write, `'open'` lets it pass. */
  onStoreError?: 'closed' | 'open';
  /**
   * Milliseconds the guard waits for a store's `get` or for `resolveId`; past it, `onStoreError`
   * decides, so every request gets an answer. Default 1000.
   */
  timeout?: number;
  /** Default message for namespaces in maintenance that carry none. */
  message?: string;
  /**
   * A pino-compatible logger (pino-http's `req.log`, when a request carries one, takes the lines
   * about that request). Default: a pino logger at `warn` on stderr. `false` silences the guard.
   * Its throws are swallowed.
   */
  logger?: Logger | false;
  /**
   * Take part in the migration fence (`store.wait()`, `nsro enable --wait`): register this
   * process, count its admitted writes in flight and renew a lease. The price of the guarantee:
   * a process whose lease lapses (Redis unreachable for `heartbeatTtl`) refuses every write.
   * Needs a store that supports it (`RedisStateStore`) and `onStoreError: 'closed'`. Default
   * `false`.
   */
  fence?: boolean;
  /**
   * Lets a request carrying a valid bypass token for the root namespace (or `*` for the instance)
   * write despite its state: `{ secret }`, a string of at least 32 characters or an array of them
   * (every one verifies, the first signs: rotation). Tokens come from `createBypassToken` or
   * `nsro token`, in the header `X-Namespace-Read-Only-Bypass` or the cookie `nsro_bypass`.
   */
  bypass?: { secret: string | readonly string[] };
  /**
   * The hook for roles: may this request write to `namespace` (`*`: the instance) despite its
   * state? Asked only for a write that state would refuse. A throw or rejection means no.
   */
  canBypass?: (req: Req, namespace: string) => boolean | Promise<boolean>;
  /**
   * Mark every response for a namespace in maintenance (reads, bypassed and reported writes
   * included) with `X-Namespace-Read-Only: <namespace>`, exposed to other origins. Default `false`.
   */
  signal?: boolean;
  /** The status of a refusal whose state carries this `reason` (`{ archived: 403 }`). Default 503. */
  statusFor?: Readonly<Record<string, 403 | 423 | 503>>;
  /** Reads that write (a `GET` that exports or enqueues), as allowlist rules: treated as writes. */
  writeRoutes?: readonly AllowRule[];
  /**
   * Replaces the built-in refusal: called with the status and headers already set, and `info`
   * (namespace, reason, retryAfter...). It must answer; `next` is there for `next(error)`.
   */
  handler?: (req: Req, res: Res, next: NextFunction, info: RefusalInfo) => void;
  /** Exempts a request before any work: `true` lets it through untouched. */
  skip?: (req: Req) => boolean;
  /**
   * Prometheus metrics with prom-client (an optional peer dependency, loaded only with this
   * option): `{ registry, prefix = 'nsro_' }`. See docs/observability.md.
   */
  metrics?: MetricsOptions;
}

/** What a custom `handler` is told about a refusal. */
export interface RefusalInfo {
  readonly status: number;
  /** Root namespace, `*` for the instance, `null` when it could not be determined. */
  readonly namespace: string | null;
  /** Why it was refused (`maintenance`, `frozen`, `store-unavailable`...). */
  readonly refusal: RefusalReason;
  readonly code: RefusalCode;
  /** The state's own reason, when it carries one. */
  readonly reason: string | undefined;
  /** Seconds, as sent in `Retry-After`; `undefined` for a status other than 503. */
  readonly retryAfter: number | undefined;
  /** The message the built-in answer would show. */
  readonly message: string;
  readonly state: NamespaceState | undefined;
}

/** Everything derived from the options, computed once when the guard is created. */
export interface Config {
  readonly store: StateStore;
  /** True when the guard created the store itself, and so may close it. */
  readonly ownsStore: boolean;
  readonly routes: NamespaceRoutes;
  readonly allowedBy: AllowlistMatch;
  readonly relativeUrlRoot: string;
  readonly resolveId: ResolveId | undefined;
  readonly retryAfter: number;
  readonly failOpen: boolean;
  readonly timeout: number;
  readonly message: string | undefined;
  readonly logger: Logger;
  readonly fence: boolean;
  readonly bypass: BypassKeys | undefined;
  readonly canBypass:
    | ((req: IncomingMessage, namespace: string) => boolean | Promise<boolean>)
    | undefined;
  readonly signal: boolean;
  readonly statusFor: ReadonlyMap<string, number>;
  readonly writeRoutes: AllowlistMatch | null;
  readonly handler: NamespaceReadOnlyOptions['handler'] | undefined;
  readonly skip: ((req: IncomingMessage) => boolean) | undefined;
  readonly metrics: MetricsConfig | null;
}

/** Every option name, checked by the compiler against the options type. */
const OPTION_NAMES: Record<keyof NamespaceReadOnlyOptions, true> = {
  store: true,
  routes: true,
  allowlist: true,
  relativeUrlRoot: true,
  resolveId: true,
  retryAfter: true,
  onStoreError: true,
  timeout: true,
  message: true,
  logger: true,
  fence: true,
  bypass: true,
  canBypass: true,
  signal: true,
  statusFor: true,
  writeRoutes: true,
  handler: true,
  skip: true,
  metrics: true,
};

export function resolveOptions(options: unknown): Config {
  const o = optionsObject(options, OPTION_NAMES, 'option');
  const logger = loggerOption(o.logger);
  const store = storeOption(o.store, logger);
  const failOpen = storeErrorOption(o.onStoreError);
  return {
    store,
    ownsStore: o.store === undefined,
    routes: routesOption(o.routes),
    // `undefined` only: `null` is a mistake to report, not a request for GitLab's allowlist.
    allowedBy: compileAllowlist(o.allowlist === undefined ? gitlabAllowlist() : o.allowlist),
    relativeUrlRoot: rootOption(o.relativeUrlRoot),
    resolveId: optionalFunction<ResolveId>(
      o.resolveId,
      'resolveId',
      'a function (kind, id) => fullPath | null',
    ),
    retryAfter: retryAfterOption(o.retryAfter),
    failOpen,
    timeout: wholeNumber(o.timeout, 'timeout', 1000, 1),
    message: messageOption(o.message),
    logger,
    fence: fenceOption(o.fence, store, failOpen),
    bypass: bypassOption(o.bypass),
    canBypass: optionalFunction(o.canBypass, 'canBypass', 'a function (req, namespace) => boolean'),
    signal: booleanOption(o.signal, 'signal'),
    statusFor: statusForOption(o.statusFor),
    writeRoutes:
      o.writeRoutes === undefined ? null : compileAllowlist(o.writeRoutes, 'writeRoutes'),
    handler: optionalFunction(o.handler, 'handler', 'a function (req, res, next, info)'),
    skip: optionalFunction(o.skip, 'skip', 'a function (req) => boolean'),
    metrics: metricsOption(o.metrics),
  };
}

function booleanOption(value: unknown, option: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new OptionsError(option, 'true or false', value);
  return value;
}

const STATUSES: ReadonlySet<unknown> = new Set([403, 423, 503]);

function statusForOption(value: unknown): ReadonlyMap<string, number> {
  const map = new Map<string, number>();
  if (value === undefined) return map;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OptionsError('statusFor', 'an object { [reason]: 403 | 423 | 503 }', value);
  }
  for (const [reason, status] of Object.entries(value)) {
    if (!STATUSES.has(status)) {
      throw new OptionsError(`statusFor.${reason}`, '403, 423 or 503', status);
    }
    map.set(reason, status as number);
  }
  return map;
}

/**
 * `options` as a record whose every key is in `names` (`undefined` and `null` are `{}`). `owner`
 * prefixes the option in messages (`'option'`, `'RedisStateStore option'`).
 */
export function optionsObject(
  options: unknown,
  names: Readonly<Record<string, true>>,
  owner: string,
): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new OptionsError('options', 'an object', options, owner);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!Object.hasOwn(names, key)) {
      const hint = suggest(key, Object.keys(names));
      throw new OptionsError(
        key,
        `one of the known options${hint ? ` (did you mean \`${hint}\`?)` : ''}`,
        o[key],
        owner,
      );
    }
  }
  return o;
}

/** A whole number >= `min`, or `fallback` when absent. */
export function wholeNumber(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  owner = 'option',
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new OptionsError(option, `a whole number >= ${min}`, value, owner);
  }
  return value;
}

/** One of `choices`, or the first of them when absent. */
export function oneOf<const T extends string>(
  value: unknown,
  option: string,
  choices: readonly [T, ...T[]],
  owner = 'option',
): T {
  if (value === undefined) return choices[0];
  if (!choices.includes(value as T)) {
    throw new OptionsError(
      option,
      choices
        .map((c) => `'${c}'`)
        .join(', ')
        .replace(/, ([^,]*)$/, ' or $1'),
      value,
      owner,
    );
  }
  return value as T;
}

function storeOption(value: unknown, logger: Logger): StateStore {
  // The store the guard creates logs where the guard does (and is silent with `logger: false`).
  if (value === undefined) return new MemoryStateStore({ logger });
  const store = value as Partial<StateStore> | null;
  if (
    typeof store !== 'object' ||
    store === null ||
    typeof store.get !== 'function' ||
    typeof store.set !== 'function' ||
    typeof store.delete !== 'function'
  ) {
    throw new OptionsError('store', 'a state store with get, set and delete methods', value);
  }
  return store as StateStore;
}

function routesOption(value: unknown): NamespaceRoutes {
  if (value === undefined) return gitlabRoutes();
  if (Array.isArray(value)) {
    if (value.length === 0) throw new OptionsError('routes', 'at least one pattern', value);
    return patternRoutes(value);
  }
  const routes = value as Partial<NamespaceRoutes> | null;
  if (typeof routes !== 'object' || routes === null || typeof routes.resolve !== 'function') {
    throw new OptionsError(
      'routes',
      'gitlabRoutes(), an object with resolve(), or an array of patterns',
      value,
    );
  }
  return routes as NamespaceRoutes;
}

function rootOption(value: unknown): string {
  if (value === undefined || value === '' || value === '/') return '';
  if (
    typeof value !== 'string' ||
    !value.startsWith('/') ||
    value.endsWith('/') ||
    /[?#\s]|\/\//.test(value)
  ) {
    throw new OptionsError(
      'relativeUrlRoot',
      'a path like "/gitlab" (leading slash, no trailing slash, no query)',
      value,
    );
  }
  return value;
}

function retryAfterOption(value: unknown): number {
  if (value === undefined) return 900;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < 1 ||
    value > 365 * 24 * 3600
  ) {
    throw new OptionsError('retryAfter', 'a whole number of seconds between 1 and 31536000', value);
  }
  return value;
}

function storeErrorOption(value: unknown): boolean {
  return oneOf(value, 'onStoreError', ['closed', 'open']) === 'open';
}

/**
 * The fence promises the operator that no admitted write is still running once a wait returns;
 * a guard that admits writes it could not check would break that promise silently, so the two
 * cannot be combined.
 */
function fenceOption(value: unknown, store: StateStore, failOpen: boolean): boolean {
  if (value === undefined || value === false) return false;
  if (value !== true) throw new OptionsError('fence', 'true or false', value);
  if (typeof store.register !== 'function') {
    throw new OptionsError(
      'fence',
      'used with a store that supports the migration fence (RedisStateStore)',
      value,
    );
  }
  if (failOpen) {
    throw new OptionsError(
      'onStoreError',
      "'closed' when `fence` is on (a write admitted unchecked would break the fence's guarantee)",
      'open',
    );
  }
  return true;
}

function messageOption(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0)
    throw new OptionsError('message', 'a non-empty string', value);
  return value;
}

/** The default logger, silence (`false`) or the user's logger made unable to throw. */
export function loggerOption(value: unknown, owner = 'option'): Logger {
  return resolveLogger(value, owner);
}

function optionalFunction<T>(value: unknown, option: string, expected: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new OptionsError(option, expected, value);
  return value as T;
}

/** The known option closest to a misspelt one (case-insensitive, or at most two edits away). */
export function suggest(key: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of names) {
    const d = name.toLowerCase() === key.toLowerCase() ? 0 : distance(name, key);
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
