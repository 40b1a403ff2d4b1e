import { hostname, userInfo } from 'node:os';
import { BypassKeys, mintBypassToken } from '../bypass/token.js';
import { UsageError } from '../errors.js';
import type { RedisStateStore } from '../stores/redis/store.js';
import {
  actorOf,
  bypassSecret,
  checkedNamespace,
  enableEnd,
  enableStart,
  enableState,
  logLimit,
  type Parsed,
  rejectOptions,
  SECRET_ENV,
  tokenTtl,
  waitTimeout,
} from './args.js';
import { describeAuditEntry, describeFence, describeState } from './output.js';

/**
 * Each command as a plan: checked in full when it is made (before connecting), then run
 * against the store, whose methods do the work; nothing here writes Redis keys itself. `token`
 * is the exception: it needs no store, and is made whole by `bypassToken`.
 */

export type Out = (line: string) => void;
export type Plan = (store: RedisStateStore, out: Out) => Promise<void>;

export function plan({ command, namespace, values }: Parsed, now: number): Plan {
  if (values['secret-file'] !== undefined && command !== 'token') {
    throw new UsageError(`--secret-file only goes with token, not ${command}`);
  }
  switch (command) {
    case 'enable': {
      const ns = checkedNamespace(namespace, command);
      rejectOptions(values, command);
      const end = enableEnd(values, now);
      const start = enableStart(values, now);
      const state = enableState(values);
      const timeout = waitTimeout(values, values.wait === true);
      const actor = actorOf(values, osUser, hostname());
      const { message, reason } = values;
      return async (store, out) => {
        await store.enable(ns, {
          ...(message !== undefined && { message }),
          ...(reason !== undefined && { reason }),
          ...end,
          ...start,
          ...state,
          actor,
        });
        out(describeState(ns, await store.get(ns)));
        if (timeout !== null) out(describeFence(await store.wait(ns, { timeout })));
      };
    }
    case 'wait': {
      const ns = checkedNamespace(namespace, command);
      rejectOptions(values, command);
      const timeout = waitTimeout(values, true) ?? undefined;
      return async (store, out) =>
        out(describeFence(await store.wait(ns, timeout === undefined ? {} : { timeout })));
    }
    case 'disable': {
      const ns = checkedNamespace(namespace, command);
      rejectOptions(values, command);
      const actor = actorOf(values, osUser, hostname());
      const { reason } = values;
      return async (store, out) => {
        await store.delete(ns, { actor, ...(reason !== undefined && { reason }) });
        out(`${ns}: writable`);
      };
    }
    case 'status': {
      rejectOptions(values, command);
      if (namespace !== undefined) {
        const ns = checkedNamespace(namespace, command);
        return async (store, out) => out(describeState(ns, await store.get(ns)));
      }
      return async (store, out) => {
        const all = await store.list();
        if (all.length === 0) out('no namespace has a state: everything is writable');
        for (const { namespace: ns, state } of all) out(describeState(ns, state));
      };
    }
    case 'list': {
      rejectOptions(values, command);
      if (namespace !== undefined) throw new UsageError('list takes no namespace');
      return async (store, out) => {
        for (const { namespace: ns, state } of await store.list()) out(`${ns}\t${state.state}`);
      };
    }
    case 'log': {
      rejectOptions(values, command);
      const ns = namespace === undefined ? undefined : checkedNamespace(namespace, command);
      const limit = logLimit(values);
      return async (store, out) => {
        const entries = await store.audit({ limit, ...(ns !== undefined && { namespace: ns }) });
        if (entries.length === 0) out(ns === undefined ? 'no entries' : `no entries for ${ns}`);
        for (const entry of entries) out(describeAuditEntry(entry));
      };
    }
    default:
      throw new UsageError(
        `unknown command "${command}" (enable, wait, disable, status, list, log, token)`,
      );
  }
}

/** The operating system's name for the user running the CLI, as best it can be told. */
function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    // No passwd entry (a container running under an arbitrary uid).
    return process.env.USER ?? process.env.LOGNAME ?? `uid ${process.getuid?.() ?? 'unknown'}`;
  }
}

/** `token <ns> --for <duration>`: the bypass token to print, made without Redis. */
export function bypassToken(
  { namespace, values }: Parsed,
  now: number,
  env: Readonly<Record<string, string | undefined>>,
): string {
  const ns = checkedNamespace(namespace, 'token');
  const ttl = tokenTtl(values);
  const secret = bypassSecret(values['secret-file'], env[SECRET_ENV]);
  return mintBypassToken(new BypassKeys(secret), ns, ttl, now);
}
