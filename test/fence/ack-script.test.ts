import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ACK_SCRIPT, ACK_TTL_MS } from '../../src/fence/member.js';
import { connectClient, type RedisServer, startRedis, stopAll } from '../helpers/redis.js';

/**
 * The acknowledgement script on its own, against a real redis-server: the rules that keep an
 * acknowledgement from ever satisfying a wait it was not given for. The races around it (a hash
 * lost while a process drains) are in test/e2e/fence-races.test.ts.
 */

const HASH = 'nsro:fence:acme';
const ID = 'host:123:abc';

let server: RedisServer;
let client: Redis;

beforeAll(async () => {
  server = await startRedis();
  client = await connectClient(server.port);
});

afterEach(async () => {
  await client.flushall();
});

afterAll(async () => {
  await stopAll();
});

/** What a process does once it has drained for `epoch`: 1 when its acknowledgement is >= epoch. */
function ack(epoch: number, id = ID): Promise<unknown> {
  return client.eval(ACK_SCRIPT, 1, HASH, id, String(epoch), String(ACK_TTL_MS));
}

describe('ACK_SCRIPT', () => {
  it('records an acknowledgement up to the counter, and refuses one above it', async () => {
    await client.hset(HASH, 'epoch', '2');
    expect(await ack(2)).toBe(1);
    expect(await client.hget(HASH, ID)).toBe('2');
    // Above the counter: the hash was lost (and recreated) since that wait began.
    expect(await ack(3, 'other')).toBe(0);
    expect(await client.hget(HASH, 'other')).toBeNull();
  });

  it('refuses any acknowledgement once the hash is gone, and does not recreate it', async () => {
    expect(await ack(1)).toBe(0);
    expect(await client.exists(HASH)).toBe(0);
  });

  it('never lowers a later acknowledgement', async () => {
    await client.hset(HASH, 'epoch', '2');
    expect(await ack(2)).toBe(1);
    // A repeated request of an older wait, handled late: still satisfied, and 2 stays.
    expect(await ack(1)).toBe(1);
    expect(await client.hget(HASH, ID)).toBe('2');
  });

  it('keeps the hash for ACK_TTL_MS from the acknowledgement', async () => {
    await client.hset(HASH, 'epoch', '1');
    await client.pexpire(HASH, 60_000);
    expect(await ack(1)).toBe(1);
    const pttl = await client.pttl(HASH);
    expect(pttl).toBeGreaterThan(60_000);
    expect(pttl).toBeLessThanOrEqual(ACK_TTL_MS);
  });
});
