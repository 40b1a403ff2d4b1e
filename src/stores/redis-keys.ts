import type { Cluster, Redis } from 'ioredis';

/** Small Redis helpers the store and the fence share. */

export function isCluster(redis: Redis | Cluster): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true;
}

/** `text` as a literal inside a SCAN/PSUBSCRIBE glob. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** Every key matching `pattern`: SCAN to the end, on every master of a Cluster. */
export async function scanAll(redis: Redis | Cluster, pattern: string): Promise<string[]> {
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
