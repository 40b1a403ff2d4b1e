import type { Logger } from './options.js';

/**
 * At most one line per kind of trouble per interval, with a count of what was held back: a
 * Redis outage at 10k req/s must not turn into 10k log lines a second.
 */
export class LogLimiter {
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  error(kind: string, fields: object, message: string): void {
    this.#log('error', kind, fields, message);
  }

  warn(kind: string, fields: object, message: string): void {
    this.#log('warn', kind, fields, message);
  }

  #log(level: 'error' | 'warn', kind: string, fields: object, message: string): void {
    const now = Date.now();
    const seen = this.#last.get(kind);
    if (seen !== undefined && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.#last.set(kind, { at: now, suppressed: 0 });
    this.logger[level]({ ...fields, ...(suppressed > 0 && { suppressed }) }, message);
  }
}
