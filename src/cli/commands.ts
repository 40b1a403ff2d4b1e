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
import {
  describeAuditEntry,
  describeFence,
  describeState,
  psTable,
  type StateRow,
  sinceOf,
  stateRow,
  statusTable,
} from './output.js';

/**
 * Each command as a plan: checked in full when it is made (before connecting), then run
 * against the store, whose methods do the work; nothing here writes Redis keys itself. `token`
 * is the exception: it needs no store, and is made whole by `bypassToken`.
 */

export type Out = (line: string) => void;
export type Plan = (store: RedisStateStore, out: Out) => Promise<void>;

/** `--json`: the whole answer as one JSON document, on one line. */
function printJson(out: Out, document: unknown): void {
  out(JSON.stringify(document));
}

/** A namespace's state as a row, with when the audit trail says it was set. */
async function rowOf(store: RedisStateStore, ns: string): Promise<StateRow> {
  const state = await store.get(ns);
  const since = state === null ? null : sinceOf((await store.lastChanges([ns])).get(ns), state);
  return stateRow(ns, state, since);
}

export function plan({ command, namespace, values }: Parsed, now: number): Plan {
  if (values['secret-file'] !== undefined && command !== 'token') {
    throw new UsageError(`--secret-file only goes with token, not ${command}`);
  }
  const json = values.json === true;
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
        if (json) {
          const row = await rowOf(store, ns);
          const fence = timeout === null ? undefined : await store.wait(ns, { timeout });
          printJson(out, fence === undefined ? row : { ...row, fence });
          return;
        }
        out(describeState(ns, await store.get(ns)));
        if (timeout !== null) out(describeFence(await store.wait(ns, { timeout })));
      };
    }
    case 'wait': {
      const ns = checkedNamespace(namespace, command);
      rejectOptions(values, command);
      const timeout = waitTimeout(values, true) ?? undefined;
      return async (store, out) => {
        const result = await store.wait(ns, timeout === undefined ? {} : { timeout });
        if (json) printJson(out, result);
        else out(describeFence(result));
      };
    }
    case 'disable': {
      const ns = checkedNamespace(namespace, command);
      rejectOptions(values, command);
      const actor = actorOf(values, osUser, hostname());
      const { reason } = values;
      return async (store, out) => {
        await store.delete(ns, { actor, ...(reason !== undefined && { reason }) });
        if (json) printJson(out, stateRow(ns, null, null));
        else out(`${ns}: writable`);
      };
    }
    case 'status': {
      rejectOptions(values, command);
      if (namespace !== undefined) {
        const ns = checkedNamespace(namespace, command);
        return async (store, out) => {
          if (json) printJson(out, await rowOf(store, ns));
          else out(describeState(ns, await store.get(ns)));
        };
      }
      return async (store, out) => {
        const all = await store.list();
        const latest =
          all.length === 0 ? null : await store.lastChanges(all.map((a) => a.namespace));
        const at = Date.now();
        const rows = all.map(({ namespace: ns, state }) =>
          stateRow(ns, state, sinceOf(latest?.get(ns), state), at),
        );
        if (json) printJson(out, { namespaces: rows });
        else if (rows.length === 0) out('no namespace has a state: everything is writable');
        else for (const line of statusTable(rows, at)) out(line);
      };
    }
    case 'list': {
      rejectOptions(values, command);
      if (namespace !== undefined) throw new UsageError('list takes no namespace');
      return async (store, out) => {
        const all = await store.list();
        if (json) {
          printJson(out, {
            namespaces: all.map(({ namespace: ns, state }) => ({
              namespace: ns,
              state: state.state,
            })),
          });
          return;
        }
        for (const { namespace: ns, state } of all) out(`${ns}\t${state.state}`);
      };
    }
    case 'ps': {
      rejectOptions(values, command);
      if (namespace !== undefined) throw new UsageError('ps takes no namespace');
      return async (store, out) => {
        const processes = await store.processes();
        if (json) printJson(out, { processes });
        else for (const line of psTable(processes)) out(line);
      };
    }
    case 'log': {
      rejectOptions(values, command);
      const ns = namespace === undefined ? undefined : checkedNamespace(namespace, command);
      const limit = logLimit(values);
      return async (store, out) => {
        const entries = await store.audit({ limit, ...(ns !== undefined && { namespace: ns }) });
        if (json) printJson(out, { entries });
        else if (entries.length === 0)
          out(ns === undefined ? 'no entries' : `no entries for ${ns}`);
        else for (const entry of entries) out(describeAuditEntry(entry));
      };
    }
    default:
      throw new UsageError(
        `unknown command "${command}" (enable, wait, disable, status, list, ps, log, token)`,
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

/**
 * `token <ns> --for <duration>`: the line to print, made without Redis: the bypass token alone,
 * or with `--json` `{ namespace, token, expiresAt }`.
 */
export function bypassToken(
  { namespace, values }: Parsed,
  now: number,
  env: Readonly<Record<string, string | undefined>>,
): string {
  const ns = checkedNamespace(namespace, 'token');
  const ttl = tokenTtl(values);
  const secret = bypassSecret(values['secret-file'], env[SECRET_ENV]);
  const token = mintBypassToken(new BypassKeys(secret), ns, ttl, now);
  if (values.json !== true) return token;
  return JSON.stringify({ namespace: ns, token, expiresAt: new Date(now + ttl).toISOString() });
}
