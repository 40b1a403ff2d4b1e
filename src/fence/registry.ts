import type { ProcessInfo } from '../errors.js';
import { getEach, isCluster, type RedisClient } from '../stores/redis/client.js';
import type { RedisKeys } from '../stores/redis/keys.js';

/**
 * The registry of live processes. The sorted set `<prefix>procs` holds every registered
 * process's id, scored with the end of its lease on Redis's own clock (`TIME` + heartbeatTtl,
 * taken when the heartbeat runs); a process counts as live while that score is not in the past.
 * Its details (host, pid, writes in flight) are under `<prefix>proc:<id>` with the same TTL.
 * Reading the live set is one range of the sorted set and one MGET: it costs what the live
 * processes cost, not what the keyspace holds.
 *
 * Only Redis's clock is compared with a score, and the score is never earlier than the moment the
 * process sent its heartbeat + heartbeatTtl: the process's lease (measured from that moment on
 * its own clock) ends no later than the registry stops counting it.
 *
 * Nothing stays behind: each heartbeat drops members whose lease is over and extends the set's
 * TTL (never shortens it) to twice its heartbeatTtl, which outlives every lease in it.
 */

/** Redis's clock, in ms, as the local `now`. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * A heartbeat: KEYS[1] the registry, KEYS[2] the process's details (omitted on a Cluster, where
 * the two keys live in different slots); ARGV id, heartbeatTtl, details (JSON).
 */
export const HEARTBEAT_SCRIPT = `${NOW}
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now))
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < 2 * ttl then redis.call('PEXPIRE', KEYS[1], 2 * ttl) end
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl) end
return 1`;

/** The ids whose lease has not ended: KEYS[1] the registry. */
export const LIVE_SCRIPT = `${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now), '+inf')`;

/** Registers `info.id` (or renews its registration) for `ttl` ms from when Redis runs it. */
export async function heartbeat(
  redis: RedisClient,
  keys: RedisKeys,
  info: ProcessInfo,
  ttl: number,
): Promise<void> {
  const details = JSON.stringify(info);
  const args = [info.id, String(ttl), details];
  if (isCluster(redis)) {
    // One after the other: sent at once on a new Cluster client, whose connections to the nodes
    // open on first use, the pair often took 100 ms instead of 1 (ioredis 6, Redis 7.0).
    await redis.eval(HEARTBEAT_SCRIPT, 1, keys.processes, ...args);
    await redis.set(keys.process(info.id), details, 'PX', ttl);
  } else {
    await redis.eval(HEARTBEAT_SCRIPT, 2, keys.processes, keys.process(info.id), ...args);
  }
}

/** Ends `id`'s registration: no wait counts it from now on. */
export async function deregister(redis: RedisClient, keys: RedisKeys, id: string): Promise<void> {
  // Two keys in different slots on a Cluster: one command each.
  await Promise.all([redis.zrem(keys.processes, id), redis.del(keys.process(id))]);
}

/** Every registered (live) process. */
export async function liveProcesses(redis: RedisClient, keys: RedisKeys): Promise<ProcessInfo[]> {
  const ids = (await redis.eval(LIVE_SCRIPT, 1, keys.processes)) as string[];
  const values = await getEach(
    redis,
    ids.map((id) => keys.process(id)),
  );
  return ids.map((id, i) => parse(values[i] ?? null) ?? unknown(id));
}

function parse(value: string | null): ProcessInfo | null {
  if (value === null) return null;
  try {
    return JSON.parse(value) as ProcessInfo;
  } catch {
    return null;
  }
}

/**
 * A live process whose details are missing (on a Cluster, written a moment after its registry
 * entry, or lost): it still counts, with what its id tells (`<host>:<pid>:<random>`).
 */
function unknown(id: string): ProcessInfo {
  const parts = id.split(':');
  return {
    id,
    host: parts.slice(0, -2).join(':'),
    pid: Number(parts.at(-2)),
    startedAt: '',
    inflight: {},
  };
}
