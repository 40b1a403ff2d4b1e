import { performance } from 'node:perf_hooks';
import {
  FenceTimeoutError,
  NotInMaintenanceError,
  type ProcessInfo,
  RedisTransactionError,
} from '../errors.js';
import type { NamespaceState } from '../state/values.js';
import { exec, type RedisClient } from '../stores/redis/client.js';
import type { RedisKeys } from '../stores/redis/keys.js';
import { ACK_TTL_MS } from './member.js';
import { liveProcesses } from './registry.js';

/**
 * The operator's side of the migration fence: bump the namespace's epoch, ask every live
 * process to acknowledge it, and return once each one has (see member.ts for theirs).
 */

/** How long a wait lasts by default (ms). */
export const DEFAULT_WAIT_TIMEOUT = 60_000;
/** How often the request is repeated, for a process whose subscriber was reconnecting (ms). */
const REQUEST_EVERY_MS = 250;
const POLL_MS = 25;

export interface WaitOptions {
  /** Give up after this long (ms). Default 60000. */
  readonly timeout?: number;
}

export interface WaitResult {
  readonly namespace: string;
  readonly epoch: number;
  /** The processes that acknowledged. */
  readonly processes: readonly ProcessInfo[];
  readonly ms: number;
}

/**
 * Waits until every live process has acknowledged that writes to `namespace` are closed and
 * its admitted writes there have finished. The namespace must already be closed.
 */
export async function waitForFence(
  redis: RedisClient,
  keys: RedisKeys,
  namespace: string,
  readState: () => Promise<NamespaceState | null>,
  options: WaitOptions = {},
): Promise<WaitResult> {
  const timeout = options.timeout ?? DEFAULT_WAIT_TIMEOUT;
  const started = performance.now();
  const state = await readState();
  if (state === null || state.state === 'active') throw new NotInMaintenanceError(namespace);
  const ackKey = keys.fence(namespace);
  const [bumped] = await exec(
    redis.multi().hincrby(ackKey, 'epoch', 1).pexpire(ackKey, ACK_TTL_MS),
  );
  const epoch = Number(bumped);
  if (!Number.isInteger(epoch)) throw new RedisTransactionError();
  const wait = Math.random().toString(36).slice(2, 12);
  const request = JSON.stringify({ namespace, epoch, wait });
  let lastRequest = Number.NEGATIVE_INFINITY;
  for (;;) {
    const now = performance.now();
    if (now - lastRequest >= REQUEST_EVERY_MS) {
      await redis.publish(keys.fenceChannel, request);
      lastRequest = now;
    }
    const live = await liveProcesses(redis, keys);
    // Only the live processes' acknowledgements: the hash also keeps those of processes gone.
    const acks = live.length === 0 ? [] : await redis.hmget(ackKey, ...live.map((p) => p.id));
    const pending = live.filter((_, i) => !(Number(acks[i] ?? 0) >= epoch));
    if (pending.length === 0) {
      return { namespace, epoch, processes: live, ms: Math.round(performance.now() - started) };
    }
    if (performance.now() - started >= timeout) {
      throw new FenceTimeoutError(
        namespace,
        timeout,
        pending.map((p) => ({
          ...p,
          // As of its last heartbeat (every 100 ms while it drains): a count noted when it began
          // draining would still include every write that has finished since.
          inflightHere: Number(p.inflight[namespace] ?? 0),
        })),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
