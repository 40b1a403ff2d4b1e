import { StoreTimeoutError } from './errors.js';

/**
 * A time budget for a promise the guard or a store waits on (a Redis read, a custom store's
 * `get`, `resolveId`): whatever never settles must not hold a request, or a CLI, for ever.
 */

/** Rejects with `StoreTimeoutError` after `ms`; the timer never keeps the process alive. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new StoreTimeoutError(ms)), ms);
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
