import { LogLimiter } from '../../logger.js';

/**
 * The Redis store's own failures, counted for the guard's metrics (`nsro_store_errors_total`)
 * as they are logged: every occurrence, including those the log holds back. Only failed
 * operations are counted, under a fixed set of kinds; the other lines the store logs through
 * the same limiter (a degraded mode, an unrecognised value, a listener that threw) are not
 * failures of the store.
 */

/** The kind a failure is logged under -> the kind it is counted under. */
const COUNTED: Readonly<Record<string, string>> = {
  read: 'redis-read',
  load: 'redis-load',
  canary: 'redis-canary',
  subscriber: 'redis-subscriber',
  subscribe: 'redis-subscriber',
  keyspace: 'redis-keyspace',
  heartbeat: 'redis-heartbeat',
  fence: 'redis-fence',
};

export class CountingLimiter extends LogLimiter {
  readonly #counts: Record<string, number> = Object.fromEntries(
    Object.values(COUNTED).map((kind) => [kind, 0]),
  );

  override error(kind: string, fields: object, message: string): void {
    this.#count(kind);
    super.error(kind, fields, message);
  }

  override warn(kind: string, fields: object, message: string): void {
    this.#count(kind);
    super.warn(kind, fields, message);
  }

  /** Failures so far, by kind, every kind present (0 when none). */
  get counts(): Readonly<Record<string, number>> {
    return { ...this.#counts };
  }

  #count(kind: string): void {
    const counted = COUNTED[kind];
    if (counted !== undefined) this.#counts[counted] = (this.#counts[counted] ?? 0) + 1;
  }
}
