import type { Redis as RedisClient } from 'ioredis';
import { FenceTimeoutError, RedisUnreachableError, UsageError } from '../errors.js';
import { DEFAULT_PREFIX } from '../stores/redis/keys.js';
import { RedisStateStore } from '../stores/redis/store.js';
import { EXIT, parse, redactUrl, redisUrl, USAGE } from './args.js';
import { bypassToken, plan } from './commands.js';
import { errorLine } from './output.js';

/**
 * The operator's CLI: `namespace-read-only` (alias `nsro`). Validates everything before it
 * connects (and `token` never connects), so a typo writes nothing; one line per error, non-zero
 * exit codes (2 for bad input, 1 when Redis cannot be reached or refuses, 3 when a wait times
 * out).
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
    const url = redisUrl(values.redis, process.env.REDIS_URL);
    redis = await connect(url);
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
    const usage = error instanceof UsageError;
    process.stderr.write(errorLine(error, usage));
    if (error instanceof FenceTimeoutError) return EXIT.waitTimedOut;
    return usage ? EXIT.usage : EXIT.unreachable;
  } finally {
    redis?.disconnect();
  }
}

async function connect(url: string): Promise<RedisClient> {
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
    throw new RedisUnreachableError(`cannot reach Redis at ${redactUrl(url)}: ${reason}`);
  }
  return redis;
}
