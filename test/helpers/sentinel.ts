import { Redis, type RedisOptions } from 'ioredis';
import { type RedisServer, startRedis, trackClient, waitFor } from './redis.js';

/**
 * A real Redis Sentinel group on loopback: one master, one replica, one Sentinel, tuned so that a
 * failover takes a second or two. The Sentinel is `redis-server <config> --sentinel`, which is
 * what Debian's `redis-sentinel` binary is (a link to `redis-server`), so nothing beyond the
 * `redis-server` package is needed.
 *
 * Every server is a `startRedis` server: tracked, no persistence, files in a temporary
 * directory, stopped by `stopAll()` and SIGKILLed at process exit. Every wait waits for a fact
 * the servers report, never for a fixed time.
 */

const HOST = '127.0.0.1';
const MASTER_NAME = 'nsro-test';

export interface SentinelGroup {
  /** The name the Sentinel monitors the master under (`name` for ioredis). */
  readonly masterName: string;
  /** The master the group started with (started with `--notify-keyspace-events K$gx`). */
  readonly master: RedisServer;
  /** Its replica (started without keyspace notifications), promoted by a failover. */
  readonly replica: RedisServer;
  readonly sentinel: RedisServer;
  /** For ioredis's `sentinels` option. */
  readonly sentinels: readonly { host: string; port: number }[];
  /** The master's address as the Sentinel reports it now (`SENTINEL get-master-addr-by-name`). */
  masterAddress(): Promise<{ host: string; port: number }>;
  /** SIGKILLs the master (a crash); resolves once the process has exited. */
  killMaster(): Promise<void>;
  /**
   * Resolves with the replica once the Sentinel names it as the master and it reports
   * `role:master` itself.
   */
  waitForPromotion(options?: { timeout?: number }): Promise<RedisServer>;
  stop(): Promise<void>;
}

/** `INFO <section>` of `server` as a map of its `field:value` lines. */
export async function info(server: RedisServer, section: string): Promise<Map<string, string>> {
  const fields = new Map<string, string>();
  for (const line of (await server.cli('info', section)).split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/**
 * Records from a `redis-cli` reply that is a list of field/value lists (`SENTINEL replicas`):
 * redis-cli prints them flattened, one string a line, each record starting with `name`.
 */
function records(reply: string): Map<string, string>[] {
  const lines = reply.split('\n');
  const out: Map<string, string>[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const key = lines[i] as string;
    const value = lines[i + 1] as string;
    if (key === 'name' || out.length === 0) out.push(new Map());
    out[out.length - 1]?.set(key, value);
  }
  return out;
}

export async function startSentinelGroup(): Promise<SentinelGroup> {
  const started: RedisServer[] = [];
  try {
    // No 5 s wait (Redis 7's default) for more replicas before the first full sync.
    const master = await startRedis([
      '--notify-keyspace-events',
      'K$gx',
      '--repl-diskless-sync-delay',
      '0',
    ]);
    started.push(master);
    const replica = await startRedis(['--replicaof', HOST, String(master.port)]);
    started.push(replica);
    await waitFor(
      async () => (await info(replica, 'replication')).get('master_link_status') === 'up',
      {
        timeout: 15_000,
        interval: 20,
        what: `the replica on ${replica.port} to sync with the master on ${master.port}`,
      },
    );

    // Started after the replica is linked: the Sentinel's first INFO of the master lists it
    // (later ones come only every 10 s).
    const sentinel = await startRedis(['--sentinel'], {
      config: [
        `sentinel monitor ${MASTER_NAME} ${HOST} ${master.port} 1`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 500`,
        `sentinel failover-timeout ${MASTER_NAME} 2000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    });
    started.push(sentinel);
    await waitFor(
      async () => {
        const found = records(await sentinel.cli('sentinel', 'replicas', MASTER_NAME)).find(
          (r) => r.get('port') === String(replica.port),
        );
        const flags = found?.get('flags') ?? '';
        return (
          found !== undefined &&
          flags.split(',').includes('slave') &&
          !/disconnected|s_down|o_down/.test(flags) &&
          found.get('master-link-status') === 'ok'
        );
      },
      { timeout: 15_000, interval: 50, what: 'the Sentinel to see the linked replica' },
    );

    const masterAddress = async () => {
      const [host, port] = (
        await sentinel.cli('sentinel', 'get-master-addr-by-name', MASTER_NAME)
      ).split('\n');
      return { host: host ?? '', port: Number(port) };
    };
    if ((await masterAddress()).port !== master.port) {
      throw new Error('the Sentinel does not name the master it was told to monitor');
    }

    return {
      masterName: MASTER_NAME,
      master,
      replica,
      sentinel,
      sentinels: [{ host: HOST, port: sentinel.port }],
      masterAddress,
      killMaster: () => master.kill(),
      waitForPromotion: async ({ timeout = 20_000 } = {}) => {
        // 20 s by default: a failover aborted for want of a fresh replica is retried after
        // 2 x failover-timeout (4 s).
        await waitFor(
          async () =>
            (await masterAddress()).port === replica.port &&
            (await info(replica, 'replication')).get('role') === 'master',
          { timeout, interval: 20, what: `the Sentinel to promote the replica on ${replica.port}` },
        );
        return replica;
      },
      stop: async () => {
        // The Sentinel first, so that it reconfigures nothing while the servers go.
        await sentinel.stop();
        await Promise.all([master.stop(), replica.stop()]);
      },
    };
  } catch (error) {
    for (const server of started.reverse()) await server.stop();
    throw error;
  }
}

/**
 * An ioredis client that finds the master through the group's Sentinel, with the never-hang
 * settings of `connectClient` (no offline queue, one retry, short command timeout, quick
 * reconnects). Connected before it returns; `stopAll()` disconnects it if the test did not.
 */
export async function connectSentinelClient(
  group: Pick<SentinelGroup, 'sentinels' | 'masterName'>,
  options: RedisOptions = {},
): Promise<Redis> {
  const client = new Redis({
    sentinels: group.sentinels.map((s) => ({ ...s })),
    name: group.masterName,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 500,
    connectTimeout: 1000,
    retryStrategy: (times) => Math.min(times * 50, 300),
    sentinelRetryStrategy: (times) => Math.min(times * 50, 300),
    ...options,
  });
  trackClient(client);
  await client.connect();
  return client;
}
