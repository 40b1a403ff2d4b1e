/**
 * The Redis key schema: the only place a key, pattern or channel name is built. Everything
 * lives under one prefix (default `nsro:`):
 *
 *   <prefix>state:<ns>   a namespace's state (`*` for the instance): what an operator SETs
 *   <prefix>index        set: the namespaces that have a state key, so loading every state
 *                        costs O(states), not a SCAN of the database; kept by the stores
 *   <prefix>canary:<id>  a process's own key, rewritten to prove its push path still delivers
 *   <prefix>changes      channel: a store's set/delete announces the namespace it changed
 *   <prefix>audit        stream, capped: one entry per change made through a store or the CLI
 *                        (namespace, from, to, actor, reason, time)
 *   <prefix>fence        channel: an operator's wait asks live processes to acknowledge
 *   <prefix>fence:<ns>   hash: the wait's epoch counter and each process's acknowledgement
 *   <prefix>procs        sorted set: every registered process's id, scored with its lease's end
 *   <prefix>proc:<id>    a registered process's details (JSON), kept alive by its heartbeat TTL
 *   <prefix>ps           sorted set: every guarding process's id (`nsro ps`), scored with the end
 *                        of its announcement by its own clock (only to drop long-dead ids)
 *   <prefix>ps:<id>      a guarding process's announcement (JSON: mode, knowledge age, states,
 *                        writes in flight), renewed every canary tick, expiring by its own TTL
 */

export const DEFAULT_PREFIX = 'nsro:';

export class RedisKeys {
  readonly prefix: string;
  readonly #state: string;
  /** Where `set` and `delete` announce a change; the message is the namespace key. */
  readonly changes: string;
  /** Where operators' fence requests arrive. */
  readonly fenceChannel: string;
  /** SCAN pattern for every state key. */
  readonly statePattern: string;
  /** The registry of live processes (sorted set: id scored with its lease's end). */
  readonly processes: string;
  /** The set of namespaces that have a state key. */
  readonly index: string;
  /** The stream of changes made through a store or the CLI (capped). */
  readonly audit: string;
  /** The ids of the processes that announce themselves (sorted set), for `nsro ps`. */
  readonly announcements: string;

  constructor(prefix: string = DEFAULT_PREFIX) {
    this.prefix = prefix;
    this.#state = `${prefix}state:`;
    this.changes = `${prefix}changes`;
    this.fenceChannel = `${prefix}fence`;
    this.statePattern = `${escapeGlob(this.#state)}*`;
    this.processes = `${prefix}procs`;
    this.index = `${prefix}index`;
    this.audit = `${prefix}audit`;
    this.announcements = `${prefix}ps`;
  }

  /** The key of a normalised namespace (`acme`, `*`). */
  state(namespace: string): string {
    return this.#state + namespace;
  }

  /** The namespace a state key holds (the inverse of `state()`). */
  namespaceOf(stateKey: string): string {
    return stateKey.slice(this.#state.length);
  }

  fence(namespace: string): string {
    return `${this.prefix}fence:${namespace}`;
  }

  process(id: string): string {
    return `${this.prefix}proc:${id}`;
  }

  /** A guarding process's announcement (`nsro ps`). */
  announcement(id: string): string {
    return `${this.prefix}ps:${id}`;
  }

  /** The prefix every state key starts with. */
  get statePrefix(): string {
    return this.#state;
  }

  canary(id: string): string {
    return `${this.prefix}canary:${id}`;
  }

  /** The keyspace-notification channel of a key in database `db`. */
  keyspaceChannel(db: number, key: string): string {
    return `__keyspace@${db}__:${key}`;
  }

  /** The channel prefix of keyspace notifications for state keys in database `db`. */
  keyspacePrefix(db: number): string {
    return `__keyspace@${db}__:${this.#state}`;
  }

  /** The PSUBSCRIBE pattern for those notifications. */
  keyspacePattern(db: number): string {
    return `${escapeGlob(this.keyspacePrefix(db))}*`;
  }
}

/** `text` as a literal inside a SCAN/PSUBSCRIBE glob. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
