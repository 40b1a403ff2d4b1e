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
  // Lines about the configuration (`setup: true`, logged once when a guard is created) are kept
  // apart, so a test counting what requests caused does not count them.
  const logged = () => entries.filter((e) => e.object.setup !== true);
  const of = (level: Level) => logged().filter((e) => e.level === level);
  const setup = () => entries.filter((e) => e.object.setup === true);
  return { logger, entries, logged, of, setup, warned: () => of('warn') };
}
