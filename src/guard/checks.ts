import type { IncomingMessage } from 'node:http';
import type { InflightWrites } from '../fence/inflight.js';
import type { Config } from '../options.js';
import { namespaceKey } from '../request/namespace-name.js';
import type { RequestMemo } from '../state/request-memo.js';
import { INSTANCE, type NamespaceState } from '../state/values.js';
import type { WriterRegistration } from '../stores/store.js';
import { toError } from './answer.js';
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
}

export interface CheckParts {
  readonly config: Config;
  readonly memo: RequestMemo;
  readonly log: VerdictLog;
  readonly inflight: InflightWrites;
  readonly registration: WriterRegistration | null;
}

const NO_ROUTE = () => null;

export function createChecks(parts: CheckParts): Checks {
  const { config, memo, log, inflight, registration } = parts;

  async function check(key: string, req: IncomingMessage | undefined): Promise<Verdict> {
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
    }
    const v = verdict({
      namespace,
      own,
      instance,
      readError,
      failOpen: config.failOpen,
      holdsLease: registration === null || registration.holdsLease(),
      route: null,
      allowedBy: NO_ROUTE,
    });
    log.check(v, key);
    return v;
  }

  async function assertWritable(namespace: string, req?: IncomingMessage): Promise<void> {
    const v = await check(namespaceKey(namespace), req);
    if (!v.admit) throw toError(v.block, config);
  }

  return {
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
