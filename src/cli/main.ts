import type { Redis as RedisClient } from 'ioredis';
import {
  FenceTimeoutError,
  NotInMaintenanceError,
  RedisUnreachableError,
  StoreTimeoutError,
  UsageError,
} from '../errors.js';
import { DEFAULT_PREFIX } from '../stores/redis/keys.js';
import { RedisStateStore } from '../stores/redis/store.js';
import {
  EXIT,
  packageVersion,
  parse,
  type RedisTarget,
  redactUrl,
  redisTarget,
  USAGE,
} from './args.js';
import { bypassToken, plan } from './commands.js';
import { errorLine } from './output.js';

/**
 * The operator's CLI: `namespace-read-only` (alias `nsro`). Validates everything before it
 * connects (and `token` never connects), so a typo writes nothing; one line per error, and one
 * exit code per outcome (`EXIT`, listed in the usage).
 */

export { parseDuration } from './args.js';
export { describeState } from './output.js';

/** Every command, with a budget: a CLI must never hang on a silent Redis. */
const CLI_TIMEOUT_MS = 3000;

export async function main(argv: string[], out = console.log): Promise<number> {
  let redis: RedisClient | undefined;
  try {
    const parsed = parse(argv);
    const { command, values } = parsed;
    if (values.version === true) {
      const version = packageVersion();
      out(values.json === true ? JSON.stringify({ version }) : version);
      return EXIT.ok;
    }
    if (values.help === true || command === '' || command === 'help') {
      out(USAGE);
      return command === '' && values.help !== true ? EXIT.usage : EXIT.ok;
    }
    if (command === 'token') {
      // Signed here, with no connection: minting a token needs no Redis.
      out(bypassToken(parsed, Date.now(), process.env));
      return EXIT.ok;
    }
    // Everything is validated before connecting: bad input writes nothing.
    const run = plan(parsed, Date.now());
    redis = await connect(redisTarget(values.redis, process.env.REDIS_URL));
    const store = new RedisStateStore({
      redis,
      prefix: values.prefix ?? DEFAULT_PREFIX,
      subscribe: false,
      // The CLI guards nothing: it must not show up in its own `ps`.
      announce: false,
      timeout: CLI_TIMEOUT_MS,
      // The CLI reports in its own words (an unrecognised value in `status`, an error line).
      logger: false,
    });
    await run(store, out);
    await store.close();
    return EXIT.ok;
  } catch (error) {
    process.stderr.write(
      error instanceof NotInMaintenanceError
        ? // Said in the operator's terms: the library's message names no next step.
          `nsro: ${error.namespace} is writable (not in maintenance): no fence to wait for, nothing written; 'nsro enable ${error.namespace} --wait' closes it and waits\n`
        : errorLine(error, error instanceof UsageError),
    );
    return exitCode(error);
  } finally {
    redis?.disconnect();
  }
}

function exitCode(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof FenceTimeoutError) return EXIT.waitTimedOut;
  if (error instanceof NotInMaintenanceError) return EXIT.notInMaintenance;
  // A silent server after connecting is as unreachable as one that refused the connection.
  if (error instanceof RedisUnreachableError || error instanceof StoreTimeoutError) {
    return EXIT.unreachable;
  }
  return EXIT.failed;
}

async function connect({
  url,
  db,
  display,
}: RedisTarget & { readonly display: string }): Promise<RedisClient> {
  let Redis: typeof import('ioredis').Redis;
  try {
    ({ Redis } = await import('ioredis'));
  } catch {
    throw new RedisUnreachableError('the CLI needs ioredis: npm install ioredis');
  }
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: CLI_TIMEOUT_MS,
    // A server that accepts and never answers must not hang the CLI.
    commandTimeout: CLI_TIMEOUT_MS,
    // disconnect() on an already-closed socket keeps a timer of this length alive (ioredis).
    disconnectTimeout: 100,
    retryStrategy: () => null,
  });
  let cause: Error | undefined;
  redis.on('error', (error: Error) => {
    cause ??= error; // reported once, below
  });
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    const reason = (cause ?? (error as Error)).message;
    throw new RedisUnreachableError(`cannot reach Redis at ${redactUrl(display)}: ${reason}`);
  }
  if (db !== 0) await select(redis, db, display);
  return redis;
}

/**
 * SELECTs `db` before anything else is sent. The server alone knows how many databases it has
 * (its `databases` setting, 16 by default): one it refuses is bad input, and nothing was written.
 */
async function select(redis: RedisClient, db: number, display: string): Promise<void> {
  try {
    await redis.select(db);
  } catch (error) {
    const message = (error as Error).message;
    if (!/DB index is out of range|invalid DB index/i.test(message)) {
      redis.disconnect();
      throw error;
    }
    // How many there are, for the message; CONFIG may be renamed or refused, and is not needed.
    const count = await redis
      .config('GET', 'databases')
      // An array in RESP2, a map (an object to ioredis) in RESP3.
      .then((reply: unknown) =>
        Number(Array.isArray(reply) ? reply[1] : (reply as Record<string, unknown>).databases),
      )
      .catch(() => Number.NaN);
    redis.disconnect();
    const range = Number.isInteger(count) ? ` (it has ${count}: 0 to ${count - 1})` : '';
    throw new UsageError(`Redis at ${redactUrl(display)} has no database ${db}${range}`);
  }
}
