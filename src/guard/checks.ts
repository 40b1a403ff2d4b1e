import type { IncomingMessage } from 'node:http';
import { bypassTokenOf } from '../bypass/request.js';
import { type BypassGrant, verifyBypassToken } from '../bypass/token.js';
import type { InflightWrites } from '../fence/inflight.js';
import type { Observer } from '../observe/observer.js';
import type { Config } from '../options.js';
import { namespaceKey } from '../request/namespace-name.js';
import type { RequestMemo } from '../state/request-memo.js';
import { INSTANCE, type NamespaceState, type StateValue } from '../state/values.js';
import type { WriterRegistration } from '../stores/store.js';
import { blockMessage, toError } from './answer.js';
import { type Verdict, verdict } from './verdict.js';
import type { VerdictLog } from './verdict-log.js';

/**
 * The programmatic checks, for writes that do not arrive as a guarded request (GraphQL
 * mutations behind an allowlisted endpoint, jobs, consumers). They ask the same verdict as the
 * middleware, with the same states, policy and lease; only the allowlist never applies, since a
 * check names a namespace, not a route.
 */

export interface Checks {
  /** True when a write to `namespace` (or, with `'*'`, to the instance) would be refused now. */
  isReadOnly(namespace: string, req?: IncomingMessage): Promise<boolean>;
  /** Throws `NamespaceReadOnlyError` when a write to `namespace` would be refused. */
  assertWritable(namespace: string, req?: IncomingMessage): Promise<void>;
  /**
   * Runs `work` as an admitted write to `namespace` for code outside a request (jobs,
   * consumers): refused with `NamespaceReadOnlyError` when the namespace is read-only, counted
   * as in flight (so the migration fence waits for it) while it runs.
   */
  runWrite<T>(namespace: string, work: () => T | Promise<T>): Promise<T>;
  /** What a UI needs for a banner: is `namespace` read-only now, and why. */
  status(namespace: string, req?: IncomingMessage): Promise<NamespaceStatus>;
}

/** The status handler's answer for one namespace. */
export interface NamespaceStatus {
  /** The root namespace, lower-cased, or `*`. */
  readonly namespace: string;
  /** Would a write to it be refused now? */
  readonly readOnly: boolean;
  /** The state that applies (the namespace's own, else the instance's): `active` when none. */
  readonly state: StateValue;
  readonly message: string | null;
  readonly until: string | null;
  readonly startsAt: string | null;
  readonly reason: string | null;
}

export interface CheckParts {
  readonly config: Config;
  readonly memo: RequestMemo;
  readonly log: VerdictLog;
  readonly inflight: InflightWrites;
  readonly registration: WriterRegistration | null;
  readonly observer?: Observer | null;
}

const NO_ROUTE = () => null;

export function createChecks(parts: CheckParts): Checks {
  const { config, memo, log, inflight, registration, observer } = parts;

  async function check(key: string, req: IncomingMessage | undefined): Promise<Verdict> {
    return (await judge(key, req)).v;
  }

  async function judge(
    key: string,
    req: IncomingMessage | undefined,
  ): Promise<{ v: Verdict; own: NamespaceState | null; instance: NamespaceState | null }> {
    const namespace = key === INSTANCE ? null : key;
    let own: NamespaceState | null = null;
    let instance: NamespaceState | null = null;
    let readError: unknown;
    try {
      [own, instance] = await Promise.all([
        namespace === null ? null : memo.read(namespace, req),
        memo.read(INSTANCE, req),
      ]);
    } catch (error) {
      readError = error ?? 'store rejected';
      observer?.storeError(readError);
    }
    const now = Date.now();
    const grant = req === undefined ? null : tokenGrant(req, now);
    const granted = new Set<string>();
    const input = {
      namespace,
      own,
      instance,
      readError,
      failOpen: config.failOpen,
      holdsLease: registration === null || registration.holdsLease(),
      now,
      route: null,
      allowedBy: NO_ROUTE,
      bypass: (ns: string) => grant?.namespace === ns || granted.has(ns),
    };
    let v = verdict(input);
    // The same hook for roles as the middleware's, asked once, for a state only.
    const hook = config.canBypass;
    if (!v.admit && hook !== undefined && req !== undefined && v.block.state !== undefined) {
      const ns = v.block.namespace as string;
      try {
        if ((await hook(req, ns)) === true) granted.add(ns);
      } catch (error) {
        log.conditionFailed(error, 'canBypass');
      }
      if (granted.size > 0) v = verdict(input);
    }
    log.check(v, key);
    return { v, own, instance };
  }

  function tokenGrant(req: IncomingMessage, now: number): BypassGrant | null {
    const keys = config.bypass;
    const token = keys === undefined ? null : bypassTokenOf(req);
    return keys === undefined || token === null ? null : verifyBypassToken(token, keys, now);
  }

  async function assertWritable(namespace: string, req?: IncomingMessage): Promise<void> {
    const v = await check(namespaceKey(namespace), req);
    if (!v.admit) throw toError(v.block, config);
  }

  return {
    async status(namespace, req) {
      const key = namespaceKey(namespace);
      const { v, own, instance } = await judge(key, req);
      const shown = own !== null && own.state !== 'active' ? own : instance;
      const set = shown !== null && shown.state !== 'active' ? shown : null;
      return {
        namespace: key,
        readOnly: !v.admit,
        state: set?.state ?? 'active',
        message: !v.admit ? blockMessage(v.block, config) : (set?.message ?? null),
        until: set?.until?.toISOString() ?? null,
        startsAt: set?.startsAt?.toISOString() ?? null,
        reason: set?.reason ?? null,
      };
    },
    isReadOnly: async (namespace, req) => !(await check(namespaceKey(namespace), req)).admit,
    assertWritable,
    async runWrite(namespace, work) {
      const key = namespaceKey(namespace);
      // Counted from before the check: its two reads may come back at different times, one of
      // them still holding the old, open state, and a fence that finds the namespace closed in
      // between must find this write in flight.
      const leave = inflight.enter(key === INSTANCE ? null : key);
      try {
        await assertWritable(key);
        return await work();
      } finally {
        leave();
      }
    },
  };
}
