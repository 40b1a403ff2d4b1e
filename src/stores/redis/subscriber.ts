import type { LogLimiter } from '../../logger.js';
import { withTimeout } from '../../timeout.js';
import { isCluster, type RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';

/**
 * The push path: a dedicated connection subscribed to the store's change channel, the fence
 * channel, keyspace notifications for state keys (which carry a plain `redis-cli SET` to every
 * process) and the notifications of this process's own canary key, whose arrival proves the
 * whole path still delivers. Whether notifications are on is not taken on trust: sync.ts
 * decides from the canary.
 */

export interface SubscriberEvents {
  /** A namespace's state changed (or may have). */
  changed(namespace: string): void;
  /** An operator's fence request arrived (raw message). */
  fenceRequested(message: string): void;
  /** The canary key was written: the keyspace notifications reach us. */
  canary(): void;
  /** Subscribed (again) to everything: anything may have changed while nobody listened. */
  listening(): void;
  /** The connection dropped: changes may now arrive unannounced. */
  lost(wasListening: boolean): void;
}

export interface SubscriberOptions {
  /** Subscribe to keyspace notifications (state keys and the canary). */
  readonly keyspace: boolean;
  /** The key this process rewrites as its canary. */
  readonly canaryKey: string;
}

export class Subscriber {
  #connection: RedisClient | null = null;
  #closed = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly options: SubscriberOptions,
    private readonly errors: LogLimiter,
    private readonly events: SubscriberEvents,
  ) {}

  /** Connects and subscribes; resubscribes by itself after every reconnect. */
  start(): void {
    if (this.#closed || this.#connection !== null) return;
    const cluster = isCluster(this.redis);
    const connection = cluster
      ? this.redis.duplicate([], { enableOfflineQueue: true, lazyConnect: false })
      : this.redis.duplicate({
          enableOfflineQueue: true,
          commandTimeout: undefined,
          lazyConnect: false,
        });
    this.#connection = connection;
    const db = cluster ? 0 : (this.redis.options.db ?? 0);
    const keyspacePrefix = this.keys.keyspacePrefix(db);
    const canaryChannel = this.keys.keyspaceChannel(db, this.options.canaryKey);
    const keyspace = this.options.keyspace && !cluster;
    let listening = false;

    connection.on('error', (error: unknown) => {
      this.errors.warn(
        'subscriber',
        { err: error },
        'namespace-read-only: subscriber connection error',
      );
    });
    connection.on('close', () => {
      const was = listening;
      listening = false;
      this.events.lost(was);
    });
    connection.on('message', (channel: string, message: string) => {
      if (channel === this.keys.changes) this.events.changed(message);
      else if (channel === this.keys.fenceChannel) this.events.fenceRequested(message);
      else if (channel === canaryChannel) this.events.canary();
    });
    connection.on('pmessage', (_pattern: string, channel: string) => {
      if (channel.startsWith(keyspacePrefix)) {
        this.events.changed(channel.slice(keyspacePrefix.length));
      }
    });

    const listen = async () => {
      try {
        const channels = [this.keys.changes, this.keys.fenceChannel];
        if (keyspace) channels.push(canaryChannel);
        await connection.subscribe(...channels);
        if (keyspace) await connection.psubscribe(this.keys.keyspacePattern(db));
        if (this.#closed || listening) return;
        listening = true;
        this.events.listening();
      } catch (error) {
        this.errors.warn(
          'subscribe',
          { err: error },
          'namespace-read-only: subscribe failed; will retry on reconnect',
        );
      }
    };
    connection.on('ready', () => void listen());
  }

  close(): void {
    this.#closed = true;
    const connection = this.#connection;
    this.#connection = null;
    if (connection !== null) {
      connection.removeAllListeners('ready');
      connection.disconnect();
    }
  }
}

/**
 * Turns keyspace notifications on where the server lets us (`CONFIG SET`), keeping the flags
 * already set. Resolves whether they are now known to be on; `undefined` when `CONFIG` is not
 * permitted (a managed Redis may still have them on: the canary tells).
 */
export async function enableKeyspaceEvents(
  redis: RedisClient,
  mayChange: boolean,
  timeoutMs: number,
  errors: LogLimiter,
): Promise<boolean | undefined> {
  try {
    const reply = (await withTimeout(
      redis.config('GET', 'notify-keyspace-events'),
      timeoutMs,
    )) as string[];
    const flags = reply[1] ?? '';
    if (keyspaceCovered(flags)) return true;
    if (!mayChange) return false;
    await withTimeout(redis.config('SET', 'notify-keyspace-events', mergeFlags(flags)), timeoutMs);
    return true;
  } catch (error) {
    errors.warn(
      'keyspace',
      { err: error },
      'namespace-read-only: cannot read or enable keyspace notifications (CONFIG refused?); the canary decides whether they are on',
    );
    return undefined;
  }
}

/** `K` plus either `A` or all of `$` (strings), `g` (DEL, EXPIRE...) and `x` (expired). */
export function keyspaceCovered(flags: string): boolean {
  return (
    flags.includes('K') &&
    (flags.includes('A') || (flags.includes('$') && flags.includes('g') && flags.includes('x')))
  );
}

function mergeFlags(flags: string): string {
  let merged = flags;
  for (const f of 'K$gx') if (!merged.includes(f)) merged += f;
  return merged;
}
