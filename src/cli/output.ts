import type { WaitResult } from '../fence/wait.js';
import { type NamespaceState, type StateValue, toState } from '../state/values.js';
import type { LiveProcess } from '../stores/redis/announce.js';
import type { AuditEntry } from '../stores/redis/audit.js';

/**
 * What the CLI prints: one line per namespace, or a table (`status`, `ps`), readable by people
 * and by `grep`; with `--json`, one JSON document built from the same rows.
 */

export function describeState(
  namespace: string,
  state: NamespaceState | null,
  now = Date.now(),
): string {
  if (state === null) return `${namespace}: writable`;
  const parts = [`${namespace}: ${state.state === 'active' ? 'active (writable)' : state.state}`];
  if (state.startsAt !== undefined && state.startsAt.getTime() > now) {
    parts.push(
      `starts ${state.startsAt.toISOString()} (in ${formatDuration(state.startsAt.getTime() - now)})`,
    );
  }
  if (state.unrecognized !== undefined)
    parts.push(
      `(unrecognised value ${JSON.stringify(state.unrecognized)}: treated as maintenance)`,
    );
  if (state.message !== undefined) parts.push(`"${state.message}"`);
  const end = state.expiresAt ?? state.until;
  if (end !== undefined) {
    const left = end.getTime() - now;
    parts.push(
      `${state.expiresAt !== undefined ? 'ends' : 'expected to end'} ${end.toISOString()} (${formatDuration(left)} left)`,
    );
  }
  if (state.reason !== undefined) parts.push(`reason: ${state.reason}`);
  return parts.join(' ');
}

export function describeFence(result: WaitResult): string {
  const ns = result.namespace;
  if (result.processes.length === 0) {
    return `${ns}: fenced: no live process takes part in the fence (guards opt in with fence: true)`;
  }
  return `${ns}: fenced: ${result.processes.length} live process(es) acknowledged in ${result.ms} ms; no admitted write to ${ns} is still running`;
}

/**
 * One audit entry as one line: `<time> <namespace> <from> -> <to> by <actor>[ reason: <reason>]`,
 * `(none)` for no value. A value with a line break or other control character is printed as a
 * JSON string, so that an entry stays one line whatever was stored.
 */
export function describeAuditEntry(entry: AuditEntry): string {
  const line = `${entry.time || entry.id} ${oneLine(entry.namespace)} ${value(entry.from)} -> ${value(entry.to)} by ${oneLine(entry.actor)}`;
  return entry.reason === null ? line : `${line} reason: ${oneLine(entry.reason)}`;
}

function value(raw: string | null): string {
  return raw === null ? '(none)' : oneLine(raw);
}

function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
  return /[\u0000-\u001f\u007f]/.test(text) ? JSON.stringify(text) : text;
}

/** An error as one line, whatever the message (node's parseArgs errors span several). */
export function errorLine(error: unknown, usage: boolean): string {
  const message = (error instanceof Error ? error.message : String(error))
    .replace(/\s*\n\s*/g, ' ')
    .replace(/^namespace-read-only: /, '');
  return `nsro: ${message}${usage ? " (see 'nsro --help')" : ''}\n`;
}

/** One namespace's state, as `status --json` prints it (and every command that prints one). */
export interface StateRow {
  /** The normalised key: a lower-cased root namespace, or `*`. */
  readonly namespace: string;
  /** `null`: no state (writable). An unrecognised value is `maintenance`, with `unrecognized`. */
  readonly state: StateValue | null;
  /** The stored value when it was not understood; `null` otherwise. */
  readonly unrecognized: string | null;
  readonly message: string | null;
  readonly reason: string | null;
  /**
   * When the latest change recorded in the audit trail set this state (its writer's clock);
   * `null` when there is none (set with plain `redis-cli`).
   */
  readonly since: string | null;
  /** The state's expected end (`until`). */
  readonly until: string | null;
  /** When its key TTL ends it. */
  readonly expiresAt: string | null;
  /** ms until it ends: the key TTL's end, else `until`; `null` when it has neither. */
  readonly remainingMs: number | null;
  /** When a scheduled window starts. */
  readonly startsAt: string | null;
}

export function stateRow(
  namespace: string,
  state: NamespaceState | null,
  since: string | null,
  now = Date.now(),
): StateRow {
  const end = state?.expiresAt ?? state?.until;
  return {
    namespace,
    state: state?.state ?? null,
    unrecognized: state?.unrecognized ?? null,
    message: state?.message ?? null,
    reason: state?.reason ?? null,
    since,
    until: state?.until?.toISOString() ?? null,
    expiresAt: state?.expiresAt?.toISOString() ?? null,
    remainingMs: end === undefined ? null : Math.max(0, end.getTime() - now),
    startsAt: state?.startsAt?.toISOString() ?? null,
  };
}

/**
 * When the audit trail says `state` was set: the time of the namespace's latest entry, if that
 * entry set a value of the same kind (a later `redis-cli` change appends nothing).
 */
export function sinceOf(entry: AuditEntry | undefined, state: NamespaceState): string | null {
  if (entry === undefined || entry.to === null) return null;
  const written = toState(entry.to);
  if (written.state !== state.state || written.unrecognized !== state.unrecognized) return null;
  return entry.time || new Date(Number(entry.id.split('-')[0])).toISOString();
}

/** `status` without a namespace: one row per namespace with a state, and notes below. */
export function statusTable(rows: readonly StateRow[], now = Date.now()): string[] {
  const notes: string[] = [];
  let expected = false;
  const cells = rows.map((row) => {
    if (row.unrecognized !== null) {
      notes.push(
        `${oneLine(row.namespace)}: unrecognised value ${JSON.stringify(row.unrecognized)}: treated as maintenance`,
      );
    }
    let remaining = '-';
    if (row.remainingMs !== null) {
      // An `until` without a key TTL is what the clients are told, not an end: nothing ends it.
      const byItself = row.expiresAt !== null;
      if (!byItself) expected = true;
      remaining = `${byItself ? '' : '~'}${formatDuration(row.remainingMs)}`;
    }
    let starts = '-';
    if (row.startsAt !== null) {
      const left = new Date(row.startsAt).getTime() - now;
      starts =
        left > 0 ? `${short(row.startsAt)} (in ${formatDuration(left)})` : short(row.startsAt);
    }
    return [
      oneLine(row.namespace),
      row.unrecognized !== null ? 'unrecognised' : (row.state ?? 'writable'),
      row.reason === null ? '-' : oneLine(row.reason),
      row.since === null ? '-' : short(row.since),
      short(row.until ?? row.expiresAt ?? '-'),
      remaining,
      starts,
    ];
  });
  if (expected) {
    notes.push(
      '~: the expected end (until) of a state without a key TTL: it does not end by itself',
    );
  }
  return [
    ...table(['NAMESPACE', 'STATE', 'REASON', 'SINCE', 'UNTIL', 'REMAINING', 'STARTS'], cells),
    ...notes,
  ];
}

/** `ps`: one row per live guarding process, and a note when writes in flight are not tracked. */
export function psTable(processes: readonly LiveProcess[]): string[] {
  if (processes.length === 0) {
    return [
      'no live guarding process announces itself (a process appears once its store has started)',
    ];
  }
  const untracked = processes.some((p) => p.inflight === null);
  const cells = processes.map((p) => [
    oneLine(p.id),
    p.mode,
    p.cause ?? '-',
    p.knowledgeAge === null ? '-' : formatAge(p.knowledgeAge),
    p.states === null ? '-' : String(p.states),
    describeInflight(p.inflight),
    p.announcedAgo === null ? '-' : `${formatAge(p.announcedAgo)} ago`,
  ]);
  return [
    ...table(
      ['PROCESS', 'MODE', 'CAUSE', 'KNOWLEDGE AGE', 'STATES', 'IN FLIGHT', 'ANNOUNCED'],
      cells,
    ),
    ...(untracked ? ['n/a (no fence): writes in flight are not tracked without fence: true'] : []),
  ];
}

/** `3 (acme 2, beta 1)`: the total (`*`), then each namespace's share; `0` when none. */
function describeInflight(inflight: Readonly<Record<string, number>> | null): string {
  if (inflight === null) return 'n/a (no fence)';
  const total = inflight['*'] ?? 0;
  const each = Object.entries(inflight)
    .filter(([ns, n]) => ns !== '*' && n > 0)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([ns, n]) => `${oneLine(ns)} ${n}`);
  return each.length === 0 ? String(total) : `${total} (${each.join(', ')})`;
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [headers, ...rows].map((cells) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** An ISO time to the second: `2026-12-01T10:00:00Z`. */
function short(iso: string): string {
  return iso.replace(/\.\d{3}Z$/, 'Z');
}

/** A short age: tenths of a second below 10 s (`0.4s`), else as `formatDuration`. */
function formatAge(ms: number): string {
  return ms < 10_000 ? `${(Math.max(0, ms) / 1000).toFixed(1)}s` : formatDuration(ms);
}

function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return [h > 0 ? `${h}h` : '', m > 0 ? `${m}m` : '', `${s % 60}s`].filter(Boolean).join('');
}
