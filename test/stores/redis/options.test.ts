import { describe, expect, it } from 'vitest';
import { OptionsError, RedisStateStore } from '../../../src/index.js';
import { resolveRedisOptions } from '../../../src/stores/redis/options.js';

/**
 * RedisStateStore's options are checked like the guard's, when the store is created: unknown
 * keys with a did-you-mean, wrong values naming the option, every error an `OptionsError`.
 * Nothing here talks to Redis: a client only has to look like one.
 */

const redis = { multi: () => undefined, duplicate: () => undefined } as never;

function thrown(options: unknown): OptionsError {
  try {
    new RedisStateStore(options as never);
  } catch (error) {
    expect(error).toBeInstanceOf(OptionsError);
    return error as OptionsError;
  }
  throw new Error('no error thrown');
}

describe('RedisStateStore options', () => {
  it('takes the documented defaults', () => {
    expect(resolveRedisOptions({ redis })).toMatchObject({
      prefix: 'nsro:',
      ttl: 1000,
      canaryInterval: 1000,
      resyncInterval: 60_000,
      staleIfError: 30_000,
      timeout: 100,
      max: 100_000,
      subscribe: true,
      keyspaceEvents: 'enable',
      heartbeatTtl: 5000,
      auditMax: 10_000,
    });
  });

  it('treats an option set to undefined as absent', () => {
    expect(resolveRedisOptions({ redis, ttl: undefined, prefix: undefined })).toMatchObject({
      ttl: 1000,
      prefix: 'nsro:',
    });
  });

  it.each([
    ['canaryinterval', 'canaryInterval'],
    ['TTL', 'ttl'],
    ['timout', 'timeout'],
    ['heartbeatTTL', 'heartbeatTtl'],
    ['keyspaceEvent', 'keyspaceEvents'],
  ])('rejects the unknown key %s, suggesting %s', (key, suggestion) => {
    const error = thrown({ redis, [key]: 1 });
    expect(error.code).toBe('ERR_NSRO_OPTION');
    expect(error.option).toBe(key);
    expect(error.message).toContain(`did you mean \`${suggestion}\`?`);
    expect(error.message).toContain('RedisStateStore option');
  });

  it('rejects an unknown key with no near match without a suggestion', () => {
    expect(thrown({ redis, colour: 'blue' }).message).not.toContain('did you mean');
  });

  it.each([
    ['redis', undefined],
    ['redis', {}],
    ['prefix', 5],
    ['ttl', 0],
    ['ttl', 1.5],
    ['ttl', '1000'],
    ['canaryInterval', 5],
    ['resyncInterval', 99],
    ['staleIfError', -1],
    ['timeout', 0],
    ['max', 0],
    ['subscribe', 'yes'],
    ['keyspaceEvents', 'on'],
    ['heartbeatTtl', 99],
    ['auditMax', -1],
    ['auditMax', 2.5],
    ['auditMax', '100'],
    ['logger', { warn: () => undefined }],
    ['logger', true],
  ])('rejects %s = %j, naming it', (option, value) => {
    const error = thrown({ redis, [option]: value });
    expect(error.option).toBe(option);
    expect(error.message).toContain(`\`${option}\``);
  });

  it('accepts staleIfError 0 (disabled), heartbeatTtl at its floor of 100 and auditMax 0 (no audit)', () => {
    expect(
      resolveRedisOptions({ redis, staleIfError: 0, heartbeatTtl: 100, auditMax: 0 }),
    ).toMatchObject({
      staleIfError: 0,
      heartbeatTtl: 100,
      auditMax: 0,
    });
  });

  it('rejects options that are not an object', () => {
    expect(thrown('redis://localhost').option).toBe('options');
  });
});
