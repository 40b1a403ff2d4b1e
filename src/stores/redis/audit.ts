import { AuditWriteError, OptionsError } from '../../errors.js';
import { namespaceKey } from '../../request/namespace-name.js';
import { isCluster, type RedisClient } from './client.js';
import type { RedisKeys } from './keys.js';

/**
 * Changes made through a store (or the CLI, which is one), and the audit stream they append to.
 *
 * On a single Redis a change is one script: it reads the value it replaces, writes or deletes
 * the key, keeps the index, appends the audit entry and announces the change, all atomically, so
 * an entry's `from` is exactly what the change replaced and the stream's order is the order of
 * the changes. On a Cluster the stream lives in another slot than the state key, and a script
 * may only touch keys of one slot: the same script swaps the value and announces it on the
 * state key's node, then the entry is appended with a separate `XADD`. Its `from` is still exact
 * (read in the swap), but two changes racing from different processes may be appended in the
 * other order, and an entry whose `XADD` fails is missing: the change then rejects with
 * `AuditWriteError`, after it was made.
 */

/** What a store or CLI change appends to `<prefix>audit`. */
export interface AuditEntry {
  /** The stream entry's id: Redis's clock in ms, then a sequence number. */
  readonly id: string;
  /** The normalised key: a lower-cased root namespace, or `*`. */
  readonly namespace: string;
  /** The raw value the change replaced; `null`: the key did not exist. */
  readonly from: string | null;
  /** The raw value written; `null`: the key was deleted. */
  readonly to: string | null;
  /** Who made the change. */
  readonly actor: string;
  /** The state's `reason`, else the one the change was made with; `null`: none. */
  readonly reason: string | null;
  /** When, by the writer's clock (ISO 8601). */
  readonly time: string;
}

export interface AuditOptions {
  /** Only entries for this namespace (any spelling: `'Acme/Team'` is `acme`). */
  readonly namespace?: string;
  /** Most entries returned, newest first. Default 20. */
  readonly limit?: number;
}

/**
 * KEYS: the state key; then, on a single Redis, the index and (unless auditing is off) the audit
 * stream. ARGV: 'set' or 'del', namespace, value, PX ttl ('' for none), changes channel, audit
 * cap, actor, reason, time. Returns the replaced value (nil when none) and its PTTL.
 *
 * A delete of a key that does not exist changes nothing and appends no entry; a set always
 * appends one, even of the value already there (it may change the TTL, and someone meant it).
 * `replicate_commands` makes Redis 5 and 6 replicate the effects (the stream id) rather than the
 * script; Redis 7 always does.
 */
export const CHANGE_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local ok, old = pcall(redis.call, 'GET', KEYS[1])
if not ok then old = false end
local oldttl = -2
if old then oldttl = redis.call('PTTL', KEYS[1]) end
local to = ''
if ARGV[1] == 'set' then
  if ARGV[4] == '' then
    redis.call('SET', KEYS[1], ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  end
  to = ARGV[3]
  if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[2]) end
else
  redis.call('DEL', KEYS[1])
  if KEYS[2] then redis.call('SREM', KEYS[2], ARGV[2]) end
end
if KEYS[3] and (old or ARGV[1] == 'set') then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
    'namespace', ARGV[2], 'from', old or '', 'to', to,
    'actor', ARGV[7], 'reason', ARGV[8], 'time', ARGV[9])
end
redis.call('PUBLISH', ARGV[5], ARGV[2])
return {old, oldttl}`;

export interface Change {
  /** The normalised namespace. */
  readonly name: string;
  /** The raw value to write; `null` deletes the key. */
  readonly value: string | null;
  /** Key TTL in ms, for a set. */
  readonly ttl: number | undefined;
  readonly actor: string;
  readonly reason: string | undefined;
}

/**
 * Makes `change` and records it; resolves with the raw value it replaced and that key's PTTL,
 * and, on a Cluster, the error that kept its entry out of the stream (the change was made).
 */
export async function writeChange(
  redis: RedisClient,
  keys: RedisKeys,
  auditMax: number,
  change: Change,
): Promise<{ old: string | null; oldTtl: number; auditError: AuditWriteError | null }> {
  const cluster = isCluster(redis);
  const time = new Date().toISOString();
  const op = change.value === null ? 'del' : 'set';
  const fields = [
    change.name,
    change.value ?? '',
    change.ttl === undefined ? '' : String(change.ttl),
    keys.changes,
    String(auditMax),
    change.actor,
    change.reason ?? '',
    time,
  ];
  // A Cluster keeps no index (its keys live in other slots) and gets its entry below.
  const scriptKeys = cluster
    ? [keys.state(change.name)]
    : [keys.state(change.name), keys.index, ...(auditMax > 0 ? [keys.audit] : [])];
  const reply = (await redis.eval(
    CHANGE_SCRIPT,
    scriptKeys.length,
    ...scriptKeys,
    op,
    ...fields,
  )) as [string | null, number];
  const old = reply[0] ?? null;
  const oldTtl = Number(reply[1]);
  let auditError: AuditWriteError | null = null;
  if (cluster && auditMax > 0 && (old !== null || op === 'set')) {
    try {
      await redis.xadd(
        keys.audit,
        'MAXLEN',
        '~',
        auditMax,
        '*',
        'namespace',
        change.name,
        'from',
        old ?? '',
        'to',
        change.value ?? '',
        'actor',
        change.actor,
        'reason',
        change.reason ?? '',
        'time',
        time,
      );
    } catch (error) {
      auditError = new AuditWriteError(change.name, { cause: error });
    }
  }
  return { old, oldTtl, auditError };
}

const DEFAULT_LIMIT = 20;
/** Entries fetched per round trip while looking for one namespace's. */
const FILTER_PAGE = 1000;

/** The newest entries first, `limit` at most, only `namespace`'s when given. */
export async function readAudit(
  redis: RedisClient,
  keys: RedisKeys,
  options: AuditOptions = {},
): Promise<AuditEntry[]> {
  const limit = options.limit ?? DEFAULT_LIMIT;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) {
    throw new OptionsError('limit', 'a whole number >= 1', limit, 'audit() option');
  }
  const only = options.namespace === undefined ? undefined : namespaceKey(options.namespace);
  const page = only === undefined ? limit : Math.max(limit, FILTER_PAGE);
  const found: AuditEntry[] = [];
  let end: string | null = '+';
  while (end !== null && found.length < limit) {
    const batch: [id: string, fields: string[]][] = await redis.xrevrange(
      keys.audit,
      end,
      '-',
      'COUNT',
      page,
    );
    for (const [id, fields] of batch) {
      const entry = toEntry(id, fields);
      if (only === undefined || entry.namespace === only) found.push(entry);
      if (found.length === limit) break;
    }
    const last = batch[batch.length - 1];
    end = batch.length < page || last === undefined ? null : before(last[0]);
  }
  return found;
}

/**
 * The newest entry of each of `names` (normalised namespaces): one pass over the stream, newest
 * first, that stops once every name is found; a name without an entry is absent from the map.
 */
export async function readLatest(
  redis: RedisClient,
  keys: RedisKeys,
  names: readonly string[],
): Promise<Map<string, AuditEntry>> {
  const wanted = new Set(names);
  const found = new Map<string, AuditEntry>();
  let end: string | null = '+';
  while (end !== null && found.size < wanted.size) {
    const batch: [id: string, fields: string[]][] = await redis.xrevrange(
      keys.audit,
      end,
      '-',
      'COUNT',
      FILTER_PAGE,
    );
    for (const [id, fields] of batch) {
      const entry = toEntry(id, fields);
      if (wanted.has(entry.namespace) && !found.has(entry.namespace)) {
        found.set(entry.namespace, entry);
      }
    }
    const last = batch[batch.length - 1];
    end = batch.length < FILTER_PAGE || last === undefined ? null : before(last[0]);
  }
  return found;
}

function toEntry(id: string, fields: string[]): AuditEntry {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(String(fields[i]), String(fields[i + 1]));
  const orNull = (name: string) => {
    const value = f.get(name);
    return value === undefined || value === '' ? null : value;
  };
  return {
    id,
    namespace: f.get('namespace') ?? '',
    from: orNull('from'),
    to: orNull('to'),
    actor: f.get('actor') ?? '',
    reason: orNull('reason'),
    time: f.get('time') ?? '',
  };
}

/** The stream id just before `id` (XREVRANGE's end is inclusive), `null` when there is none. */
function before(id: string): string | null {
  const [ms, seq] = id.split('-');
  try {
    const m = BigInt(ms ?? '');
    const s = BigInt(seq ?? '0');
    if (s > 0n) return `${m}-${s - 1n}`;
    return m > 0n ? `${m - 1n}-18446744073709551615` : null;
  } catch {
    return null;
  }
}
