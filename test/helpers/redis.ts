import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';

/**
 * Real Redis for the integration suites: throwaway `redis-server` processes on free loopback
 * ports (no persistence, files in a temporary directory), a 3-node Cluster, the real
 * `redis-cli`, and a TCP proxy that can stall a connection without closing it.
 *
 * Nothing here is a mock. Every process and client started here is tracked, and `stopAll()`
 * (call it in `afterAll`) ends what a test forgot; a process-exit hook SIGKILLs any server
 * still alive so that a crashed run cannot leave one behind.
 */

const HOST = '127.0.0.1';
const live = new Set<ChildProcess>();
const clients = new Set<{ disconnect(): void }>();
const stoppers = new Set<() => Promise<void>>();

process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Fails clearly, before spawning anything, when the Redis binaries are not installed. */
function requireRedisBinaries(): void {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d.length > 0);
  for (const name of ['redis-server', 'redis-cli']) {
    const found = dirs.some((dir) => {
      try {
        accessSync(join(dir, name), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) {
      throw new Error(
        `${name} is not on PATH. The Redis integration tests need a real Redis server: install ` +
          'it (Debian: apt-get install -y redis-server) or run `npm test`, whose ' +
          'scripts/test.mjs installs it.',
      );
    }
  }
}

/**
 * A port nobody listens on right now. Probed the usual way (listen, read, close), but chosen
 * below the kernel's ephemeral range: a port from `listen(0)` lies inside that range, so any
 * outgoing connection in the meantime (other test files run in parallel) may take it before
 * redis-server binds it, or before a killed server is restarted on it. Ports below the range
 * are only ever taken by an explicit bind.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  if (low !== null && low > 11_000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const candidate = 10_000 + Math.floor(Math.random() * (low - 10_000));
      if (await canListen(candidate)) return candidate;
    }
  }
  return listenOn(0);
}

function ephemeralLow(): number | null {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isInteger(low) ? low : null;
  } catch {
    return null;
  }
}

async function canListen(port: number): Promise<boolean> {
  try {
    return (await listenOn(port)) === port;
  } catch {
    return false;
  }
}

function listenOn(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(port, HOST, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

/** Runs the real `redis-cli` and resolves with its stdout (trailing newline removed). */
export function redisCli(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', [...args], { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) {
        reject(
          new Error(`redis-cli ${args.join(' ')} failed: ${error.message}\n${stderr}`.trim(), {
            cause: error,
          }),
        );
        return;
      }
      resolve(stdout.replace(/\n$/, ''));
    });
  });
}

/** Polls `check` until it returns a truthy value (which is returned) or `timeout` ms pass. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  { timeout = 5000, interval = 10, what = 'condition' } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${String(last)})`);
    }
    await sleep(interval);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** `redis-cli -p <port> ...args` (the real binary); resolves with stdout. */
  cli(...args: string[]): Promise<string>;
  /** SIGTERM, then wait for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash), then wait for the process to exit. */
  kill(): Promise<void>;
  /** Starts a fresh server on the same port with the same arguments (data is not kept). */
  restart(): Promise<void>;
  /** Whether the process is running. */
  readonly running: boolean;
}

interface Spawned {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  output(): string;
}

function spawnServer(
  port: number,
  dir: string,
  extraArgs: readonly string[],
  configFile: string | null = null,
): Spawned {
  const args = [
    // A configuration file, when there is one, must be the first argument.
    ...(configFile === null ? [] : [configFile]),
    '--port',
    String(port),
    '--bind',
    HOST,
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    ...extraArgs,
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    const done = () => {
      live.delete(child);
      resolve();
    };
    child.once('exit', done);
    child.once('error', (error) => {
      log += `\n${error.message}`;
      done();
    });
  });
  return { child, exited, output: () => log };
}

/** Resolves when the server answers PING; rejects if it exits first or does not come up. */
async function awaitPing(spawned: Spawned, port: number, timeout = 10_000): Promise<void> {
  let exited = false;
  void spawned.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + timeout;
  for (;;) {
    if (exited) {
      throw new Error(`redis-server on port ${port} exited during start-up:\n${spawned.output()}`);
    }
    try {
      if ((await redisCli(['-p', String(port), 'ping'])) === 'PONG') {
        // Ours, not another suite's server that happened to hold the port.
        const info = await redisCli(['-p', String(port), 'info', 'server']);
        if (info.includes(`process_id:${spawned.child.pid}\r`)) return;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      spawned.child.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not answer PING:\n${spawned.output()}`);
    }
    await sleep(20);
  }
}

async function terminate(spawned: Spawned | null, signal: NodeJS.Signals): Promise<void> {
  if (spawned === null || spawned.child.exitCode !== null || spawned.child.signalCode !== null) {
    return;
  }
  spawned.child.kill(signal);
  const timer = setTimeout(() => spawned.child.kill('SIGKILL'), 5000);
  await spawned.exited;
  clearTimeout(timer);
}

/**
 * A throwaway `redis-server` on a free loopback port, e.g.
 * `startRedis(['--notify-keyspace-events', 'K$gx'])`. Fails with a clear message when
 * `redis-server` is not installed.
 *
 * `config`: the text of a configuration file, written into the server's temporary directory
 * and passed first (a Sentinel, `['--sentinel']`, needs one it can rewrite). Command-line
 * arguments override it.
 */
export async function startRedis(
  extraArgs: readonly string[] = [],
  options: { port?: number; config?: string } = {},
): Promise<RedisServer> {
  requireRedisBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'nsro-redis-'));
  let configFile: string | null = null;
  if (options.config !== undefined) {
    configFile = join(dir, 'redis.conf');
    writeFileSync(configFile, options.config);
  }
  let current: Spawned | null = null;
  let port = options.port ?? 0;
  // Another process may take the free port between the probe and the spawn: try a few.
  for (let attempt = 0; ; attempt++) {
    if (options.port === undefined) port = await freePort();
    const spawned = spawnServer(port, dir, extraArgs, configFile);
    try {
      await awaitPing(spawned, port);
      current = spawned;
      break;
    } catch (error) {
      if (attempt >= 2 || options.port !== undefined) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }

  const server: RedisServer = {
    port,
    url: `redis://${HOST}:${port}`,
    cli: (...args) => redisCli(['-p', String(port), ...args]),
    stop: async () => {
      await terminate(current, 'SIGTERM');
      stoppers.delete(server.stop);
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => terminate(current, 'SIGKILL'),
    restart: async () => {
      await terminate(current, 'SIGKILL');
      const spawned = spawnServer(port, dir, extraArgs, configFile);
      await awaitPing(spawned, port);
      current = spawned;
    },
    get running() {
      return (
        current !== null && current.child.exitCode === null && current.child.signalCode === null
      );
    },
  };
  stoppers.add(server.stop);
  return server;
}

export interface RedisCluster {
  readonly ports: readonly number[];
  readonly nodes: readonly RedisServer[];
  /** `redis-cli -c -p <first node> ...args`: follows MOVED redirections. */
  cli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** A local 3-master Redis Cluster (no replicas), `cluster_state:ok` on every node. */
export async function startCluster(extraArgs: readonly string[] = []): Promise<RedisCluster> {
  requireRedisBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'nsro-cluster-'));
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      // The bus port defaults to port + 10000, which does not exist above 55535: choose it.
      for (let attempt = 0; ; attempt++) {
        const busPort = await freePort();
        try {
          nodes.push(
            await startRedis([
              '--cluster-enabled',
              'yes',
              '--cluster-port',
              String(busPort),
              '--cluster-node-timeout',
              '2000',
              '--cluster-config-file',
              join(dir, `nodes-${busPort}.conf`),
              ...extraArgs,
            ]),
          );
          break;
        } catch (error) {
          if (attempt >= 2) throw error;
        }
      }
    }
    await redisCli([
      '--cluster',
      'create',
      ...nodes.map((n) => `${HOST}:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const node of nodes) {
      await waitFor(async () => (await node.cli('cluster', 'info')).includes('cluster_state:ok'), {
        timeout: 15_000,
        interval: 50,
        what: `cluster_state:ok on ${node.port}`,
      });
    }
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const first = nodes[0] as RedisServer;
  const cluster: RedisCluster = {
    ports: nodes.map((n) => n.port),
    nodes,
    cli: (...args) => redisCli(['-c', '-p', String(first.port), ...args]),
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      stoppers.delete(cluster.stop);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  stoppers.add(cluster.stop);
  return cluster;
}

/**
 * The application's ioredis client, configured as the node notes advise for a data path that
 * must never hang: no offline queue, one retry, quick reconnects. Connected before it returns;
 * `stopAll()` disconnects it if the test did not.
 */
export async function connectClient(port: number, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 1000,
    retryStrategy: (times) => Math.min(times * 50, 300),
    ...options,
  });
  trackClient(client);
  await client.connect();
  return client;
}

/**
 * Has `stopAll()` disconnect `client` if the test did not, and swallows its `error` events
 * (connection errors are expected in the fault tests; they surface as failed commands).
 */
export function trackClient(client: Redis | Cluster): void {
  client.on('error', () => undefined);
  clients.add(client);
  client.once('end', () => clients.delete(client));
}

/** An ioredis `Cluster` on the given nodes, with the same never-hang settings, connected. */
export async function connectCluster(
  ports: readonly number[],
  options: ClusterOptions = {},
): Promise<Cluster> {
  const cluster = new Cluster(
    ports.map((port) => ({ host: HOST, port })),
    {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: (times) => Math.min(times * 50, 300),
      ...options,
      redisOptions: {
        maxRetriesPerRequest: 1,
        connectTimeout: 1000,
        ...options.redisOptions,
      },
    },
  );
  trackClient(cluster);
  await cluster.connect();
  return cluster;
}

/** Disconnects every client from `connectClient`/`connectCluster` and stops every server still running. */
export async function stopAll(): Promise<void> {
  for (const client of clients) client.disconnect();
  clients.clear();
  await Promise.all([...stoppers].map((stop) => stop()));
}

/** Parses `INFO commandstats` into `{ mget: calls, get: calls, ... }`. */
export async function commandCalls(server: {
  cli(...args: string[]): Promise<string>;
}): Promise<Record<string, number>> {
  const info = await server.cli('info', 'commandstats');
  const calls: Record<string, number> = {};
  for (const line of info.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) calls[m[1]] = Number(m[2]);
  }
  return calls;
}

export interface StallProxy {
  readonly port: number;
  /** Client connections currently open through the proxy. */
  readonly connections: number;
  /** Stops forwarding in both directions; sockets stay open and data is held back. */
  stall(): void;
  /** Delivers what was held back and forwards again. */
  resume(): void;
  close(): Promise<void>;
}

/** A TCP proxy on a free loopback port in front of `targetPort` that can stall the line. */
export async function stallProxy(targetPort: number): Promise<StallProxy> {
  let stalled = false;
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const held: { to: net.Socket; chunk: Buffer }[] = [];

  const forward = (from: net.Socket, to: net.Socket) => {
    from.on('data', (chunk: Buffer) => {
      if (stalled) held.push({ to, chunk });
      else if (!to.destroyed) to.write(chunk);
    });
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };

  const server = net.createServer((downstream) => {
    connections++;
    downstream.on('close', () => connections--);
    const upstream = net.connect(targetPort, HOST);
    for (const s of [downstream, upstream]) {
      // Without it, Nagle's algorithm and delayed ACKs hold small replies back ~40 ms.
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    forward(downstream, upstream);
    forward(upstream, downstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;

  const proxy: StallProxy = {
    port,
    get connections() {
      return connections;
    },
    stall: () => {
      stalled = true;
    },
    resume: () => {
      stalled = false;
      for (const { to, chunk } of held.splice(0)) if (!to.destroyed) to.write(chunk);
    },
    close: async () => {
      stalled = false;
      held.length = 0;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      stoppers.delete(proxy.close);
    },
  };
  stoppers.add(proxy.close);
  return proxy;
}
