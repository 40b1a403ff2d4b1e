import pino from 'pino';

/** Any pino-compatible logger: `(object, message)` methods. */
export interface Logger {
  warn(object: object, message?: string): void;
  info(object: object, message?: string): void;
  debug(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

const LEVELS = ['warn', 'info', 'debug', 'error'] as const;

export function isLogger(value: unknown): value is Logger {
  return (
    typeof value === 'object' &&
    value !== null &&
    LEVELS.every((level) => typeof (value as Record<string, unknown>)[level] === 'function')
  );
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * The user's logger, made unable to throw: a log line is never worth a different answer, and a
 * throw from the request path would reach Express as a 500 (or, from a promise on Express 4,
 * crash the process).
 */
export function safeLogger(logger: Logger): Logger {
  const call = (level: (typeof LEVELS)[number]) => (object: object, message?: string) => {
    try {
      logger[level](object, message);
    } catch {
      // nowhere left to report it
    }
  };
  return { warn: call('warn'), info: call('info'), debug: call('debug'), error: call('error') };
}

/**
 * At most one line per kind of trouble per interval, with a count of what was held back: a
 * Redis outage at 10k req/s must not turn into 10k log lines a second.
 */
export class LogLimiter {
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    readonly logger: Logger,
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
