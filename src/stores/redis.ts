import type { Cluster, Redis } from 'ioredis';
import { namespaceKey } from '../namespace-name.js';
import {
  checkStateInput,
  type NamespaceState,
  type StateInput,
  serializeState,
  toState,
} from '../state.js';
import type { StateStore } from '../store.js';

/**
 * States in Redis, shared by every process: `<prefix>state:<root namespace>` holds
 * `maintenance`, `active` or a JSON object, exactly what an operator types into `redis-cli`.
 * A key TTL ends the maintenance by itself and sets `Retry-After`.
 */

export interface RedisStateStoreOptions {
  /** An ioredis `Redis` or `Cluster`; it stays yours (the store never closes it). */
  readonly redis: Redis | Cluster;
  /** Key prefix. Default `'nsro:'`. */
  readonly prefix?: string;
}

export class RedisStateStore implements StateStore {
  readonly redis: Redis | Cluster;
  readonly prefix: string;

  constructor(options: RedisStateStoreOptions) {
    const redis = (options as Partial<RedisStateStoreOptions> | undefined)?.redis;
    if (
      typeof redis !== 'object' ||
      redis === null ||
      typeof (redis as Redis).multi !== 'function'
    ) {
      throw new TypeError(
        'namespace-read-only: RedisStateStore option `redis` must be an ioredis Redis or Cluster client',
      );
    }
    const prefix = options.prefix ?? 'nsro:';
    if (typeof prefix !== 'string') {
      throw new TypeError('namespace-read-only: RedisStateStore option `prefix` must be a string');
    }
    this.redis = redis;
    this.prefix = prefix;
  }

  /** The Redis key for a namespace (`'Acme/Team'` -> `nsro:state:acme`). */
  key(namespace: string): string {
    return `${this.prefix}state:${namespaceKey(namespace)}`;
  }

  /** The channel on which `set` and `delete` announce a change (the namespace key is the message). */
  get channel(): string {
    return `${this.prefix}changes`;
  }

  async get(namespace: string): Promise<NamespaceState | null> {
    const key = this.key(namespace);
    const replies = await this.redis.multi().get(key).pttl(key).exec();
    const [value, ttl] = (replies ?? []).map(([error, reply]) => {
      if (error) throw error;
      return reply;
    });
    return fromRedis(value, ttl);
  }

  async set(namespace: string, state: StateInput): Promise<void> {
    const key = this.key(namespace);
    const value = serializeState(checkStateInput(state));
    await this.exec(
      this.redis.multi().set(key, value).publish(this.channel, namespaceKey(namespace)),
    );
  }

  async delete(namespace: string): Promise<void> {
    const key = this.key(namespace);
    await this.exec(this.redis.multi().del(key).publish(this.channel, namespaceKey(namespace)));
  }

  private async exec(multi: ReturnType<Redis['multi']>): Promise<void> {
    const replies = await multi.exec();
    for (const [error] of replies ?? []) if (error) throw error;
  }
}

/** A GET reply and a PTTL reply, as a state. */
export function fromRedis(value: unknown, ttl: unknown, now = Date.now()): NamespaceState | null {
  if (value === null || value === undefined) return null;
  const state = toState(typeof value === 'string' ? value : String(value));
  return typeof ttl === 'number' && ttl > 0 ? { ...state, expiresAt: new Date(now + ttl) } : state;
}
