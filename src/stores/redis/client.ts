import type { Cluster, Redis } from 'ioredis';
import { RedisTransactionError } from '../../errors.js';

/** What the store and the fence need from an ioredis client beyond plain commands. */

export type RedisClient = Redis | Cluster;

/**
 * An ioredis `Redis` or `Cluster`, as the public declarations name it: by members both have, so
 * that they compile where ioredis is not installed (an application on the memory store, with
 * `skipLibCheck: false`). The store checks at construction that it was given a client, and uses
 * it through ioredis's own types inside.
 */
export interface RedisClientLike {
  /** ioredis's connection status (`'ready'`, `'connecting'`, `'end'`...). */
  readonly status: string;
  multi(...args: never[]): unknown;
  duplicate(...args: never[]): unknown;
}

export function isCluster(redis: RedisClient): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true;
}

/** Every key matching `pattern`: SCAN to the end, on every master of a Cluster. */
export async function scanAll(redis: RedisClient, pattern: string): Promise<string[]> {
  const nodes = isCluster(redis) ? redis.nodes('master') : [redis];
  const keys = new Set<string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      for (const k of found) keys.add(k);
    } while (cursor !== '0');
  }
  return [...keys];
}

/** The values of `keys` in order: one MGET, or one GET per key on a Cluster (keys in any slot). */
export async function getEach(
  redis: RedisClient,
  keys: readonly string[],
): Promise<(string | null)[]> {
  if (keys.length === 0) return [];
  return isCluster(redis) ? Promise.all(keys.map((k) => redis.get(k))) : redis.mget(...keys);
}

/** Runs a MULTI and fails when it was aborted or any command in it failed. */
export async function exec(multi: ReturnType<Redis['multi']>): Promise<unknown[]> {
  const replies = await multi.exec();
  if (replies === null) throw new RedisTransactionError();
  for (const [error] of replies) if (error) throw new RedisTransactionError({ cause: error });
  return replies.map(([, value]) => value);
}
