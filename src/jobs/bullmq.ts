/**
 * `namespace-read-only/bullmq`: BullMQ jobs under the guard. A job whose namespace is in
 * maintenance is delayed (not failed, no attempt used) and runs once the namespace is writable;
 * a job that runs is counted in flight, so the migration fence waits for it.
 *
 * It imports the main entry by the package's name, so it shares its classes (`instanceof
 * NamespaceReadOnlyError` must hold for the error the guard throws).
 */
import { DelayedError, type Job } from 'bullmq';
import {
  NamespaceReadOnlyError,
  type NamespaceReadOnlyMiddleware,
  OptionsError,
  type StateChange,
} from 'namespace-read-only';

export { NamespaceReadOnlyError } from 'namespace-read-only';

/** What the wrapper needs of a guard from `namespaceReadOnly()`. */
export type JobGuard = Pick<NamespaceReadOnlyMiddleware, 'runWrite' | 'isReadOnly' | 'store'>;

/** A BullMQ processor function, as `new Worker(name, processor)` takes it. */
export type JobProcessor<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> = (
  job: Job<DataType, ResultType, NameType>,
  token?: string,
  signal?: AbortSignal,
) => Promise<ResultType>;

export interface GuardedProcessorOptions<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> {
  /**
   * The namespace the job writes to: any spelling the checks accept (`'acme'`, `'Acme/team/proj'`),
   * or `null` for a job that names none, which is still refused while the instance (`*`) is.
   */
  namespaceOf: (job: Job<DataType, ResultType, NameType>) => string | null;
  /** The job's own work, run only when the namespace is writable. */
  processor: JobProcessor<DataType, ResultType, NameType>;
  /**
   * The longest a refused job is delayed before it is checked again (ms); a state that ends
   * sooner (its `until`, its key's TTL) sets a shorter delay. Default 60000.
   */
  maxDelay?: number;
  /**
   * Promote the jobs this process delayed as soon as it hears that their namespace is writable
   * again (the store's `onStateChange`), instead of waiting out their delay. Default `true`.
   */
  promote?: boolean;
}

/** The processor to hand to `new Worker(...)`, plus `close()`. */
export interface GuardedProcessor<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
> extends JobProcessor<DataType, ResultType, NameType> {
  /** Jobs this process delayed and would promote when their namespace reopens. */
  readonly delayed: number;
  /** Stops listening to the store's changes. Call it when the worker closes. */
  close(): void;
}

const OWNER = 'guardedProcessor() option';
const OPTION_NAMES = new Set(['namespaceOf', 'processor', 'maxDelay', 'promote']);
const DEFAULT_MAX_DELAY = 60_000;
// BullMQ's delays are timestamps in Redis: a cap keeps a typo from parking jobs for years.
const LONGEST_MAX_DELAY = 24 * 3600_000;

interface Parked {
  readonly job: Job;
  /** What `namespaceOf` said, for the re-check: `*` for `null`. */
  readonly namespace: string;
  /** When the delay ends by itself (ms since the epoch). */
  readonly until: number;
}

/**
 * Wraps a BullMQ processor: before the job runs, the guard judges its namespace (the same
 * verdict as a request: states, `onStoreError`, the fence lease). Refused: the job is moved to
 * the delayed set and `DelayedError` is thrown, BullMQ's way to delay a job from inside its
 * processor without failing it or using an attempt. Admitted: it runs inside `guard.runWrite`.
 */
export function guardedProcessor<
  DataType = unknown,
  ResultType = unknown,
  NameType extends string = string,
>(
  guard: JobGuard,
  options: GuardedProcessorOptions<DataType, ResultType, NameType>,
): GuardedProcessor<DataType, ResultType, NameType> {
  const g: Partial<JobGuard> | null =
    typeof guard === 'object' || typeof guard === 'function' ? guard : null;
  if (
    typeof g?.runWrite !== 'function' ||
    typeof g.isReadOnly !== 'function' ||
    typeof g.store !== 'object' ||
    g.store === null
  ) {
    throw new OptionsError(
      'guard',
      'a guard from namespaceReadOnly()',
      guard,
      'guardedProcessor()',
    );
  }
  if (typeof options !== 'object' || options === null) {
    throw new OptionsError('options', 'an object', options, 'guardedProcessor()');
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) {
      throw new OptionsError(name, `one of ${[...OPTION_NAMES].join(', ')}`, name, OWNER);
    }
  }
  const { namespaceOf, processor } = options;
  if (typeof namespaceOf !== 'function') {
    throw new OptionsError(
      'namespaceOf',
      'a function (job) => namespace | null',
      namespaceOf,
      OWNER,
    );
  }
  if (typeof processor !== 'function') {
    throw new OptionsError('processor', 'a function (job, token) => Promise', processor, OWNER);
  }
  const maxDelay = options.maxDelay ?? DEFAULT_MAX_DELAY;
  if (!Number.isInteger(maxDelay) || maxDelay < 1 || maxDelay > LONGEST_MAX_DELAY) {
    throw new OptionsError(
      'maxDelay',
      `a whole number of milliseconds from 1 to ${LONGEST_MAX_DELAY}`,
      options.maxDelay,
      OWNER,
    );
  }
  const promote = options.promote ?? true;
  if (typeof promote !== 'boolean') {
    throw new OptionsError('promote', 'a boolean', options.promote, OWNER);
  }

  // Jobs delayed by this process, by the key that refused them (a root namespace, or `*`).
  const parked = new Map<string, Map<string, Parked>>();
  const stop = promote ? (guard.store.onStateChange?.(reopened) ?? null) : null;

  function reopened(change: StateChange): void {
    const keys = change.namespace === '*' ? [...parked.keys()] : [change.namespace];
    for (const key of keys) {
      for (const entry of parked.get(key)?.values() ?? []) void promoteIfWritable(key, entry);
    }
  }

  async function promoteIfWritable(key: string, entry: Parked): Promise<void> {
    try {
      // The change may close as well as open, and another state (the instance's) may still
      // refuse: the guard's verdict decides, as it will when the job runs.
      if (await guard.isReadOnly(entry.namespace)) return;
      unpark(key, entry);
      await entry.job.promote();
    } catch {
      // The job left the delayed set meanwhile (it ran, was promoted by another process or
      // removed), or the store failed: its delay still ends it, so nothing is lost.
    }
  }

  function park(key: string, entry: Parked): void {
    let jobs = parked.get(key);
    if (jobs === undefined) {
      jobs = new Map();
      parked.set(key, jobs);
    }
    // Entries whose delay ran out are stale (the job ran or was delayed anew): drop them here,
    // so the map holds at most the jobs delayed within the last `maxDelay`.
    const now = Date.now();
    for (const [id, old] of jobs) if (old.until <= now) jobs.delete(id);
    jobs.set(entry.job.id ?? '', entry);
  }

  function unpark(key: string, entry: Parked): void {
    const jobs = parked.get(key);
    if (jobs?.get(entry.job.id ?? '') !== entry) return;
    jobs.delete(entry.job.id ?? '');
    if (jobs.size === 0) parked.delete(key);
  }

  async function guarded(
    job: Job<DataType, ResultType, NameType>,
    token?: string,
    signal?: AbortSignal,
  ): Promise<ResultType> {
    const named = namespaceOf(job);
    // Only `null` means "no namespace": `undefined` (a misspelt field) must not pass as the
    // instance alone, so `runWrite` rejects it as a name and the job fails.
    const namespace = named === null ? '*' : named;
    let started = false;
    try {
      return await guard.runWrite(namespace, () => {
        started = true;
        return processor(job, token, signal);
      });
    } catch (error) {
      // A refusal from the job's own work (a check on another namespace) is its failure.
      if (started || !(error instanceof NamespaceReadOnlyError)) throw error;
      const wait = Math.min((error.retryAfter ?? Number.POSITIVE_INFINITY) * 1000, maxDelay);
      const until = Date.now() + wait;
      await job.moveToDelayed(until, token);
      if (stop !== null) {
        const key = error.namespace ?? '*';
        const entry: Parked = { job: job as unknown as Job, namespace, until };
        park(key, entry);
        // A reopening heard between the refusal and `park` found no job to promote: look again.
        await promoteIfWritable(key, entry);
      }
      throw new DelayedError(
        `namespace-read-only: ${error.namespace ?? namespace} is read-only (${error.refusal}); job delayed ${wait} ms`,
      );
    }
  }

  return Object.defineProperties(guarded, {
    delayed: {
      get: () => {
        let n = 0;
        for (const jobs of parked.values()) n += jobs.size;
        return n;
      },
      enumerable: true,
    },
    close: {
      value: () => {
        stop?.();
        parked.clear();
      },
    },
  }) as GuardedProcessor<DataType, ResultType, NameType>;
}
