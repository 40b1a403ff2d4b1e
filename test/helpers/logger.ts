import type { Logger } from '../../src/index.js';

export type Level = keyof Logger;
export interface LogEntry {
  readonly level: Level;
  readonly object: Record<string, unknown>;
  readonly message: string | undefined;
}

/**
 * A logger that keeps every call (the `logger` option takes any pino-compatible object), so a
 * test can read what the guard said and why.
 */
export function recordingLogger() {
  const entries: LogEntry[] = [];
  const at =
    (level: Level) =>
    (object: object, message?: string): void => {
      entries.push({ level, object: object as Record<string, unknown>, message });
    };
  const logger: Logger = {
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    error: at('error'),
  };
  const of = (level: Level) => entries.filter((e) => e.level === level);
  return { logger, entries, of, warned: () => of('warn') };
}
