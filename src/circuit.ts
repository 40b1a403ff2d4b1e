/**
 * Stops asking a failing store for a moment instead of piling calls onto it, and lets one
 * probe through afterwards so recovery needs no restart.
 */
export class Circuit {
  #failures = 0;
  #openUntil = 0;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** False while open: fail fast without touching the store. */
  allows(): boolean {
    return this.#failures < this.threshold || this.now() >= this.#openUntil;
  }

  succeeded(): void {
    this.#failures = 0;
  }

  failed(): void {
    this.#failures++;
    if (this.#failures >= this.threshold) this.#openUntil = this.now() + this.cooldownMs;
  }

  get open(): boolean {
    return !this.allows();
  }
}

export class TimeoutError extends Error {
  constructor(ms: number) {
    super(`namespace-read-only: store did not answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/** Rejects after `ms`; the timer never keeps the process alive. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(ms)), ms);
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
