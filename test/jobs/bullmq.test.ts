import { EventEmitter, once } from 'node:events';
import { DelayedError, type Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  MemoryStateStore,
  type NamespaceReadOnlyMiddleware,
  namespaceReadOnly,
  OptionsError,
  RedisStateStore,
  type StateStore,
} from 'namespace-read-only';
import { type GuardedProcessorOptions, guardedProcessor } from 'namespace-read-only/bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, type RedisServer, startRedis, stopAll, waitFor } from '../helpers/redis.js';

/**
 * The BullMQ integration with real BullMQ queues and workers on a real redis-server, the same
 * server the guard's RedisStateStore uses (BullMQ's keys are under `bull:`, the guard's under
 * `nsro:`). Every wait is on an event: a worker's `completed`, or the moment the wrapper throws
 * `DelayedError` (seen by a thin wrapper around it).
 */

interface Data {
  readonly ns: string | null;
  readonly n?: number;
}

let server: RedisServer;
let client: Redis;
let store: RedisStateStore;
let guard: NamespaceReadOnlyMiddleware;
const closers: (() => Promise<void> | void)[] = [];
let queueSeq = 0;

beforeAll(async () => {
  server = await startRedis(['--notify-keyspace-events', 'K$gx']);
  client = await connectClient(server.port);
  // `fence: true`: the guard counts the writes it admits, so a fence can wait for a job.
  store = new RedisStateStore({ redis: client, heartbeatTtl: 1000, logger: false });
  guard = namespaceReadOnly({ store, fence: true, logger: false });
  await store.ready();
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await store.delete('*');
  for (const ns of ['acme', 'beta']) await store.delete(ns);
});

afterAll(async () => {
  await guard.close();
  await store.close();
  client.disconnect();
  await stopAll();
});

const connection = () => ({ host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null });

/**
 * A queue and a worker running `work` under `guardedProcessor(on, ...)`, with the events the tests
 * wait on: `delayed` (job id) each time the wrapper delays a job, `completed`, `failed`.
 */
async function harness(
  work: (job: Job<Data>) => Promise<string>,
  options: Partial<GuardedProcessorOptions<Data, string>> = {},
  on: NamespaceReadOnlyMiddleware = guard,
) {
  const name = `jobs-${process.pid}-${++queueSeq}`;
  const queue = new Queue<Data, string>(name, { connection: connection() });
  const events = new EventEmitter();
  const ran: string[] = [];
  const failed: string[] = [];
  const processor = guardedProcessor<Data, string>(on, {
    namespaceOf: (job) => job.data.ns,
    processor: async (job) => {
      ran.push(job.id as string);
      return work(job);
    },
    ...options,
  });
  const worker = new Worker<Data, string>(
    name,
    async (job, token) => {
      try {
        return await processor(job, token);
      } catch (error) {
        if (error instanceof DelayedError) events.emit('delayed', job.id);
        throw error;
      }
    },
    { connection: connection() },
  );
  worker.on('completed', (job) => events.emit('completed', job.id, job.returnvalue));
  worker.on('failed', (job) => {
    failed.push(job?.id as string);
    events.emit('failed', job?.id);
  });
  closers.push(async () => {
    processor.close();
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  });
  await worker.waitUntilReady();
  /** Resolves the `count`-th time `event` names job `id`. */
  const next = async (event: string, id: string, count = 1): Promise<unknown[]> => {
    let seen = 0;
    for (;;) {
      const args = await once(events, event);
      if (args[0] === id && ++seen === count) return args.slice(1);
    }
  };
  return { queue, worker, events, ran, failed, processor, next };
}

/** Adds a job and resolves with its id once the first `event` about it has happened. */
async function addAndAwait(
  h: Awaited<ReturnType<typeof harness>>,
  data: Data,
  event: 'completed' | 'delayed',
): Promise<string> {
  // Paused while the job is added, so its id is known before the worker can touch it.
  await h.worker.pause(true);
  const job = await h.queue.add('job', data);
  const id = job.id as string;
  const seen = h.next(event, id);
  h.worker.resume();
  await seen;
  return id;
}

describe('guardedProcessor with BullMQ workers', () => {
  it('runs a job whose namespace is writable', async () => {
    const h = await harness(async (job) => `done ${job.data.ns}`);
    const id = await addAndAwait(h, { ns: 'acme' }, 'completed');
    const job = await h.queue.getJob(id);
    expect(await job?.getState()).toBe('completed');
    expect(job?.returnvalue).toBe('done acme');
    expect(h.ran).toEqual([id]);
  });

  it('delays a job whose namespace is in maintenance (not failed, no attempt used) and runs it once writable', async () => {
    // A delay far beyond the test's timeout: only the promotion on reopening can run the job.
    const h = await harness(async () => 'ran', { maxDelay: 3_600_000 });
    await store.set('Acme', 'maintenance');
    const id = await addAndAwait(h, { ns: 'acme/team/proj' }, 'delayed');

    const job = await h.queue.getJob(id);
    expect(await job?.getState()).toBe('delayed');
    expect(job?.attemptsMade).toBe(0);
    expect(h.ran).toEqual([]);
    expect(h.failed).toEqual([]);
    expect(h.processor.delayed).toBe(1);

    const completed = h.next('completed', id);
    await store.delete('acme');
    expect(await completed).toEqual(['ran']);
    const done = await h.queue.getJob(id);
    expect(done?.attemptsMade).toBe(1);
    expect(h.ran).toEqual([id]);
    expect(h.failed).toEqual([]);
    expect(h.processor.delayed).toBe(0);
  });

  it('leaves a job for another namespace alone', async () => {
    const h = await harness(async (job) => `ran ${job.data.ns}`, { maxDelay: 3_600_000 });
    await store.set('acme', 'maintenance');
    const acme = await addAndAwait(h, { ns: 'acme' }, 'delayed');
    const beta = await addAndAwait(h, { ns: 'beta' }, 'completed');
    expect(h.ran).toEqual([beta]);
    expect(await (await h.queue.getJob(acme))?.getState()).toBe('delayed');
  });

  it('delays until the state ends when that is sooner than maxDelay, else for maxDelay', async () => {
    const h = await harness(async () => 'ran', { maxDelay: 600_000, promote: false });
    await store.set('acme', { state: 'maintenance', until: new Date(Date.now() + 120_000) });
    await store.set('beta', 'maintenance');
    const acme = await addAndAwait(h, { ns: 'acme' }, 'delayed');
    const beta = await addAndAwait(h, { ns: 'beta' }, 'delayed');
    // Retry-After's whole seconds, counted from the refusal.
    const acmeDelay = (await h.queue.getJob(acme))?.delay ?? 0;
    expect(acmeDelay).toBeGreaterThan(110_000);
    expect(acmeDelay).toBeLessThanOrEqual(121_000);
    // No end: the guard's `retryAfter` (900 s) capped by maxDelay.
    expect((await h.queue.getJob(beta))?.delay).toBe(600_000);
  });

  it('without promotion, re-checks after the bounded delay and runs once writable', async () => {
    const h = await harness(async () => 'ran', { maxDelay: 50, promote: false });
    await store.set('acme', 'maintenance');
    await h.worker.pause(true);
    const id = (await h.queue.add('job', { ns: 'acme' })).id as string;
    const twice = h.next('delayed', id, 2);
    h.worker.resume();
    await twice;
    expect(h.processor.delayed).toBe(0);
    const completed = h.next('completed', id);
    await store.delete('acme');
    await completed;
    const job = await h.queue.getJob(id);
    expect(job?.attemptsMade).toBe(1);
    expect(h.failed).toEqual([]);
  });

  it('runs a job without a namespace, unless the instance is in maintenance', async () => {
    const h = await harness(async () => 'ran', { maxDelay: 3_600_000 });
    await store.set('acme', 'maintenance');
    await addAndAwait(h, { ns: null }, 'completed');
    await store.set('*', 'maintenance');
    const id = await addAndAwait(h, { ns: null }, 'delayed');
    const beta = await addAndAwait(h, { ns: 'beta' }, 'delayed');
    // acme is still closed: reopening the instance promotes only what is now writable.
    const completed = Promise.all([h.next('completed', id), h.next('completed', beta)]);
    await store.delete('*');
    await completed;
    expect(h.ran).toHaveLength(3);
  });

  it('counts a running job in flight: the migration fence waits for it', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const started = new EventEmitter();
    const order: string[] = [];
    const h = await harness(async () => {
      started.emit('started');
      await released;
      order.push('job finished');
      return 'ran';
    });
    // A failing assertion must not leave the job blocked: the worker's close waits for it.
    closers.push(() => release());
    const running = once(started, 'started');
    await h.worker.pause(true);
    const id = (await h.queue.add('job', { ns: 'acme' })).id as string;
    const completed = h.next('completed', id);
    h.worker.resume();
    await running;

    let settled = false;
    const fence = store.enable('acme', { wait: true, timeout: 15_000 }).then((result) => {
      settled = true;
      order.push('fence returned');
      return result;
    });
    // The process, draining for the fence, reports the job among its writes in flight (or, were
    // the job not counted, the fence has already returned).
    await waitFor(
      async () => {
        if (settled) return true;
        const keys = await client.keys('nsro:proc:*');
        const details = keys.length === 0 ? [] : await client.mget(...keys);
        return details.some((d) => d !== null && JSON.parse(d).inflight?.acme === 1);
      },
      { timeout: 15_000, what: 'the job reported in flight' },
    );
    expect(settled).toBe(false);
    release();
    expect((await fence)?.processes).toHaveLength(1);
    await completed;
    expect(order).toEqual(['job finished', 'fence returned']);
  });

  it('follows onStoreError when the state cannot be read: closed delays, open runs', async () => {
    const failing: StateStore = {
      get: () => Promise.reject(new Error('store down')),
      set: () => Promise.resolve(),
      delete: () => Promise.resolve(),
    };
    const closed = await harness(
      async () => 'ran',
      { maxDelay: 3_600_000 },
      namespaceReadOnly({ store: failing, logger: false }),
    );
    const delayed = await addAndAwait(closed, { ns: 'acme' }, 'delayed');
    expect(await (await closed.queue.getJob(delayed))?.getState()).toBe('delayed');
    expect(closed.ran).toEqual([]);

    const open = await harness(
      async () => 'ran',
      {},
      namespaceReadOnly({ store: failing, onStoreError: 'open', logger: false }),
    );
    const ran = await addAndAwait(open, { ns: 'acme' }, 'completed');
    expect(open.ran).toEqual([ran]);
  });

  it('fails a job whose namespaceOf gives no name (undefined), rather than judging the instance alone', async () => {
    const h = await harness(async () => 'ran', {
      namespaceOf: (job) => (job.data as { missing?: string }).missing as string,
    });
    await store.set('acme', 'maintenance');
    await h.worker.pause(true);
    const id = (await h.queue.add('job', { ns: 'acme' })).id as string;
    const failed = h.next('failed', id);
    h.worker.resume();
    await failed;
    const job = await h.queue.getJob(id);
    expect(job?.failedReason).toMatch(/not a namespace name/);
    expect(h.ran).toEqual([]);
  });

  it("fails a job normally when its own work throws, the guard's refusal included", async () => {
    const h = await harness(async () => {
      await guard.assertWritable('acme');
      return 'ran';
    });
    await store.set('acme', 'maintenance');
    await h.worker.pause(true);
    const id = (await h.queue.add('job', { ns: 'beta' })).id as string;
    const failed = h.next('failed', id);
    h.worker.resume();
    await failed;
    const job = await h.queue.getJob(id);
    expect(await job?.getState()).toBe('failed');
    expect(job?.failedReason).toMatch(/maintenance/);
    expect(job?.attemptsMade).toBe(1);
  });
});

describe('guardedProcessor options', () => {
  const memoryGuard = namespaceReadOnly({ store: new MemoryStateStore(), logger: false });
  const valid = { namespaceOf: () => 'acme', processor: async () => 'ok' };

  function optionError(make: () => unknown): OptionsError {
    try {
      make();
    } catch (error) {
      expect(error).toBeInstanceOf(OptionsError);
      return error as OptionsError;
    }
    throw new Error('no OptionsError thrown');
  }

  it('names the bad option', () => {
    const bad = (options: Record<string, unknown>) =>
      optionError(() =>
        guardedProcessor(memoryGuard, { ...valid, ...options } as GuardedProcessorOptions),
      ).option;
    expect(bad({ namespaceOf: 'acme' })).toBe('namespaceOf');
    expect(bad({ processor: undefined })).toBe('processor');
    expect(bad({ maxDelay: 0 })).toBe('maxDelay');
    expect(bad({ maxDelay: 1.5 })).toBe('maxDelay');
    expect(bad({ maxDelay: 2 * 24 * 3600_000 })).toBe('maxDelay');
    expect(bad({ promote: 'yes' })).toBe('promote');
    expect(bad({ delay: 10 })).toBe('delay');
    expect(
      optionError(() => guardedProcessor({} as NamespaceReadOnlyMiddleware, valid)).option,
    ).toBe('guard');
    expect(optionError(() => guardedProcessor(memoryGuard, { ...valid, maxDelay: -1 })).code).toBe(
      'ERR_NSRO_OPTION',
    );
    expect(() => guardedProcessor(memoryGuard, valid).close()).not.toThrow();
  });
});
