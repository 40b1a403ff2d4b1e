import type { LogLimiter } from '../../logger.js';
import { withTimeout } from '../../timeout.js';
import { isCluster, type RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';

/**
 * The push path: a dedicated connection subscribed to the store's change channel, the fence
 * channel and, where the server emits them, keyspace notifications for state keys (which is what
 * carries a plain `redis-cli SET` to every process).
 */

export interface SubscriberEvents {
  /** A namespace's state changed (or may have). */
  changed(namespace: string): void;
  /** An operator's fence request arrived (raw message). */
  fenceRequested(message: string): void;
  /** Listening (again): anything may have changed while nobody listened. */
  listening(keyspace: boolean): void;
  /** The connection dropped: changes may now arrive unannounced. */
  lost(wasListening: boolean): void;
}

export class Subscriber {
  #connection: RedisClient | null = null;
  #closed = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly keyspaceEvents: 'auto' | 'enable' | 'off',
    private readonly errors: LogLimiter,
    private readonly events: SubscriberEvents,
  ) {}

  /** Resolves once the subscriber has listened at least once (or could not). */
  async start(): Promise<void> {
    let keyspace = false;
    try {
      keyspace = await this.#keyspaceAvailable();
    } catch {
      // logged inside; announcements and the TTL still work
    }
    await this.#subscribe(keyspace);
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

  async #keyspaceAvailable(): Promise<boolean> {
    const mode = this.keyspaceEvents;
    if (mode === 'off' || isCluster(this.redis)) return false;
    const redis = this.redis;
    try {
      const reply = (await withTimeout(
        redis.config('GET', 'notify-keyspace-events'),
        1000,
      )) as string[];
      const flags = reply[1] ?? '';
      if (keyspaceCovered(flags)) return true;
      if (mode !== 'enable') return false;
      await withTimeout(redis.config('SET', 'notify-keyspace-events', mergeFlags(flags)), 1000);
      return true;
    } catch (error) {
      this.errors.warn(
        'keyspace',
        { err: error },
        'namespace-read-only: cannot read or enable keyspace notifications; relying on announcements and the TTL',
      );
      return false;
    }
  }

  async #subscribe(keyspace: boolean): Promise<void> {
    if (this.#closed) return;
    const connection = isCluster(this.redis)
      ? this.redis.duplicate([], { enableOfflineQueue: true, lazyConnect: false })
      : this.redis.duplicate({
          enableOfflineQueue: true,
          commandTimeout: undefined,
          lazyConnect: false,
        });
    this.#connection = connection;
    const db = isCluster(this.redis) ? 0 : (this.redis.options.db ?? 0);
    const keyspacePrefix = this.keys.keyspacePrefix(db);
    let listening = false;

    connection.on('error', (error: unknown) => {
      this.errors.warn(
        'subscriber',
        { err: error },
        'namespace-read-only: subscriber connection error',
      );
    });
    connection.on('close', () => {
      this.events.lost(listening);
      listening = false;
    });
    connection.on('message', (channel: string, message: string) => {
      if (channel === this.keys.changes) this.events.changed(message);
      else if (channel === this.keys.fenceChannel) this.events.fenceRequested(message);
    });
    connection.on('pmessage', (_pattern: string, channel: string) => {
      if (channel.startsWith(keyspacePrefix)) {
        this.events.changed(channel.slice(keyspacePrefix.length));
      }
    });

    const listen = async () => {
      try {
        await connection.subscribe(this.keys.changes, this.keys.fenceChannel);
        if (keyspace) await connection.psubscribe(this.keys.keyspacePattern(db));
        if (this.#closed) return;
        listening = true;
        this.events.listening(keyspace);
      } catch (error) {
        this.errors.warn(
          'subscribe',
          { err: error },
          'namespace-read-only: subscribe failed; relying on the TTL',
        );
      }
    };
    connection.on('ready', () => void listen());
    await new Promise<void>((resolve) => {
      const done = () => {
        connection.off('ready', done);
        connection.off('end', done);
        setImmediate(resolve);
      };
      connection.on('ready', done);
      connection.on('end', done);
      setTimeout(done, 2000).unref();
    });
    await listen();
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
