import pino from 'pino';
import { OptionsError } from './errors.js';

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

const noop = (): void => undefined;
const SILENT: Logger = Object.freeze({ warn: noop, info: noop, debug: noop, error: noop });

/** `logger: false`: says nothing. */
export function silentLogger(): Logger {
  return SILENT;
}

export function isSilent(logger: Logger): boolean {
  return logger === SILENT;
}

let shared: Logger | undefined;

/**
 * The default: JSON lines at `warn` and above on stderr, so that misconfiguration, store
 * failures, unrecognised state values and the degraded mode are visible out of the box, while
 * the lines expected during a maintenance (`info`) are not. One instance per process, shared by
 * the guards and stores that use it, created on first use. Synchronous writes to fd 2: a line
 * written just before the process exits is not lost.
 */
export function defaultLogger(): Logger {
  if (shared === undefined) {
    const destination = pino.destination({ dest: 2, sync: true });
    // A log line is never worth a crash: a closed stderr (EPIPE) is ignored, not thrown.
    destination.on('error', noop);
    shared = safeLogger(pino({ name: 'namespace-read-only', level: 'warn' }, destination));
  }
  return shared;
}

/**
 * The `logger` option of the guard and of both stores: absent, the default logger; `false`,
 * silence; otherwise a pino-compatible logger, wrapped so that it cannot throw. `owner` prefixes
 * the option in the error (`'option'`, `'RedisStateStore option'`).
 */
export function resolveLogger(value: unknown, owner = 'option'): Logger {
  if (value === undefined) return defaultLogger();
  if (value === false) return SILENT;
  if (!isLogger(value)) {
    throw new OptionsError(
      'logger',
      'a pino-compatible logger (warn, info, debug, error) or false',
      value,
      owner,
    );
  }
  return safeLogger(value);
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
