import { BypassKeys, mintBypassToken } from '../bypass/token.js';
import { UsageError } from '../errors.js';
import type { RedisStateStore } from '../stores/redis/store.js';
import {
  bypassSecret,
  checkedNamespace,
  enableEnd,
  enableStart,
  enableState,
  type Parsed,
  rejectOptions,
  SECRET_ENV,
  tokenTtl,
  waitTimeout,
} from './args.js';
import { describeFence, describeState } from './output.js';

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
      const end = enableEnd(values, now);
      const start = enableStart(values, now);
      const state = enableState(values);
      const timeout = waitTimeout(values, values.wait === true);
      const { message, reason } = values;
      return async (store, out) => {
        await store.enable(ns, {
          ...(message !== undefined && { message }),
          ...(reason !== undefined && { reason }),
          ...end,
          ...start,
          ...state,
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
      return async (store, out) => {
        await store.delete(ns);
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
    default:
      throw new UsageError(
        `unknown command "${command}" (enable, wait, disable, status, list, token)`,
      );
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
