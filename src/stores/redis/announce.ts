import type { LogLimiter } from '../../logger.js';
import { withTimeout } from '../../timeout.js';
import { isCluster, type RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';
import type { DegradedCause, SyncMode } from './sync.js';

/**
 * What `nsro ps` lists: every process whose store guards (has started its sync) announces
 * itself, fence or not. Its announcement is one small key, `<prefix>ps:<id>`, rewritten on the
 * sync's canary tick with a TTL of a few ticks, so a process that dies (SIGKILL included) drops
 * out by itself once its key expires; `close()` deletes it at once.
 *
 * Listing must not cost what the keyspace holds, so the ids are also kept in the sorted set
 * `<prefix>ps`. Whether a process is live is told by its key alone, which expires on Redis's
 * clock; the set's scores (the announcement's end by the process's own clock) serve only to drop
 * ids dead for a long while, with a margin far beyond any sane clock skew. Each tick costs one
 * round trip: `SET ... PX` and `ZADD` (every tenth also trims the set and renews its TTL, so
 * nothing stays behind once every process is gone). Nothing is measured per request.
 */

/** What a process announces. */
export interface ProcessAnnouncement {
  /** `<host>:<pid>:<random>`: the store's id, also its canary's. */
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  /** When the store started (ISO 8601, the process's clock). */
  readonly startedAt: string;
  /** `complete`, `degraded` or `starting`, as `store.status().mode`. */
  readonly mode: SyncMode;
  /** Why it is degraded; `null` otherwise. */
  readonly cause: DegradedCause | null;
  /** ms since push last proved itself while complete, as of the announcement; `null`: never. */
  readonly knowledgeAge: number | null;
  /** States held in the complete copy; `null` while not complete (decided per key). */
  readonly states: number | null;
  /**
   * Admitted writes still running, per namespace (`*`: all of them), when a guard on the store
   * runs the migration fence (`fence: true`); `null`: not tracked without it.
   */
  readonly inflight: Record<string, number> | null;
  /** When this announcement was made (ISO 8601, the process's clock). */
  readonly announcedAt: string;
  /** How long it lives unless renewed (ms). */
  readonly ttl: number;
}

/** A live process, as `store.processes()` returns it. */
export interface LiveProcess extends ProcessAnnouncement {
  /** ms since it last announced itself, by Redis's clock (from its key's remaining TTL). */
  readonly announcedAgo: number | null;
}

/** How long ids of processes gone without a `close()` stay in the set (ms). */
export const KEEP_IDS_MS = 10 * 60_000;
/** Every how many announcements the set is trimmed and its TTL renewed. */
const HOUSEKEEPING_EVERY = 10;

/** How often a store announces itself, and for how long, given its `canaryInterval`. */
export function announcePeriod(canaryInterval: number): { every: number; ttl: number } {
  const every = Math.max(1000, canaryInterval);
  return { every, ttl: 3 * every };
}

export class Announcer {
  readonly #every: number;
  readonly #ttl: number;
  #pending: Promise<void> | null = null;
  #lastAt = Number.NEGATIVE_INFINITY;
  #sent = 0;
  #stopped = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly id: string,
    canaryInterval: number,
    private readonly timeout: number,
    private readonly errors: LogLimiter,
    /** The announcement's content, taken when it is sent. */
    private readonly describe: () => Omit<ProcessAnnouncement, 'announcedAt' | 'ttl'>,
  ) {
    ({ every: this.#every, ttl: this.#ttl } = announcePeriod(canaryInterval));
  }

  /**
   * Announces this process, unless it did less than half a period ago (the canary may tick
   * faster than announcements are needed) or an announcement is still under way. `force`: even
   * if it did just now (the first sync has ended: its mode is news).
   */
  announce(force = false): void {
    if (this.#stopped || this.#pending !== null) return;
    const now = Date.now();
    if (!force && now - this.#lastAt < this.#every / 2) return;
    this.#lastAt = now;
    this.#pending = this.#send(now)
      .catch((error: unknown) => {
        this.errors.warn(
          'announce',
          { err: error },
          'namespace-read-only: announcing this process (nsro ps) failed',
        );
      })
      .finally(() => {
        this.#pending = null;
      });
  }

  /** Stops announcing and deletes the announcement; whatever fails expires by itself. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#pending;
    if (this.#sent === 0) return;
    await Promise.allSettled([
      this.redis.zrem(this.keys.announcements, this.id),
      this.redis.del(this.keys.announcement(this.id)),
    ]);
  }

  async #send(now: number): Promise<void> {
    const body = JSON.stringify({
      ...this.describe(),
      announcedAt: new Date(now).toISOString(),
      ttl: this.#ttl,
    });
    const key = this.keys.announcement(this.id);
    const set = this.keys.announcements;
    const housekeeping = this.#sent++ % HOUSEKEEPING_EVERY === 0;
    const oldest = `(${now - KEEP_IDS_MS}`;
    if (isCluster(this.redis)) {
      // The two keys live in different slots: one command each, one after the other, so that
      // at most one of them opens a connection at a time (see `#start` in store.ts).
      const redis = this.redis;
      await withTimeout(
        (async () => {
          await redis.set(key, body, 'PX', this.#ttl);
          await redis.zadd(set, now + this.#ttl, this.id);
          if (housekeeping) {
            await redis.zremrangebyscore(set, '-inf', oldest);
            await redis.pexpire(set, KEEP_IDS_MS);
          }
        })(),
        this.timeout,
      );
      return;
    }
    const pipeline = this.redis
      .pipeline()
      .set(key, body, 'PX', this.#ttl)
      .zadd(set, now + this.#ttl, this.id);
    if (housekeeping) pipeline.zremrangebyscore(set, '-inf', oldest).pexpire(set, KEEP_IDS_MS);
    const replies = await withTimeout(pipeline.exec(), this.timeout);
    const failed = replies?.find(([error]) => error !== null)?.[0];
    if (failed) throw failed;
  }
}

/**
 * Every live announcing process, sorted by id: one range of the set, then one round trip for
 * each id's announcement and remaining TTL (a pipeline; one pair of commands per id on a
 * Cluster). Ids whose key has expired are dead and left out.
 */
export async function readAnnouncements(
  redis: RedisClient,
  keys: RedisKeys,
): Promise<LiveProcess[]> {
  const ids = await redis.zrange(keys.announcements, '0', '-1');
  if (ids.length === 0) return [];
  let replies: [value: string | null, pttl: number][];
  if (isCluster(redis)) {
    replies = await Promise.all(
      ids.map(async (id) => {
        const key = keys.announcement(id);
        const [value, pttl] = await Promise.all([redis.get(key), redis.pttl(key)]);
        return [value, pttl] as [string | null, number];
      }),
    );
  } else {
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.get(keys.announcement(id)).pttl(keys.announcement(id));
    const raw = (await pipeline.exec()) ?? [];
    replies = ids.map((_, i) => {
      const get = raw[2 * i];
      const pttl = raw[2 * i + 1];
      if (get?.[0]) throw get[0];
      return [typeof get?.[1] === 'string' ? get[1] : null, Number(pttl?.[1] ?? -2)];
    });
  }
  const live: LiveProcess[] = [];
  for (const [i, id] of ids.entries()) {
    const [value, pttl] = replies[i] ?? [null, -2];
    const announcement = value === null ? null : parse(value, id);
    if (announcement === null) continue;
    const announcedAgo = pttl >= 0 ? Math.max(0, announcement.ttl - pttl) : null;
    live.push({ ...announcement, announcedAgo });
  }
  return live.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** An announcement as stored, with whatever is missing or mistyped made explicit. */
function parse(value: string, id: string): ProcessAnnouncement | null {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(value) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  const inflight =
    typeof raw.inflight === 'object' && raw.inflight !== null
      ? (raw.inflight as Record<string, number>)
      : null;
  return {
    id,
    host: str(raw.host),
    pid: num(raw.pid) ?? 0,
    startedAt: str(raw.startedAt),
    mode: str(raw.mode) as SyncMode,
    cause: typeof raw.cause === 'string' ? (raw.cause as DegradedCause) : null,
    knowledgeAge: num(raw.knowledgeAge),
    states: num(raw.states),
    inflight,
    announcedAt: str(raw.announcedAt),
    ttl: num(raw.ttl) ?? 0,
  };
}
