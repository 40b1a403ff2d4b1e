import type { WaitResult } from '../fence/wait.js';
import type { NamespaceState } from '../state/values.js';
import type { AuditEntry } from '../stores/redis/audit.js';

/** What the CLI prints: one line per namespace, readable by people and by `grep`. */

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

function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return [h > 0 ? `${h}h` : '', m > 0 ? `${m}m` : '', `${s % 60}s`].filter(Boolean).join('');
}
