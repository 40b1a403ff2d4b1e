import { describe, expect, it } from 'vitest';
import { LogLimiter } from '../../../src/logger.js';
import type { NamespaceState } from '../../../src/state/values.js';
import { StateCache } from '../../../src/stores/redis/cache.js';
import { Circuit } from '../../../src/stores/redis/reads.js';
import { recordingLogger } from '../../helpers/logger.js';

/**
 * The cache tier on its own: a loader we control and a clock we move (started well away from
 * zero, so "0 ms old" and "never read" cannot be confused).
 */
function cacheWith(overrides: Partial<ConstructorParameters<typeof StateCache>[0]> = {}) {
  let now = 1_000_000;
  const loads: string[] = [];
  const states = new Map<string, NamespaceState | null>();
  let failing: Error | null = null;
  let pending: (() => void)[] | null = null;
  const { logger, entries: lines } = recordingLogger();
  const cache = new StateCache({
    max: 100,
    ttl: 1000,
    staleIfError: 5000,
    logger,
    errors: new LogLimiter(logger),
    now: () => now,
    load: async (key) => {
      loads.push(key);
      if (pending !== null) await new Promise<void>((resolve) => pending?.push(resolve));
      if (failing !== null) throw failing;
      return states.get(key) ?? null;
    },
    ...overrides,
  });
  return {
    cache,
    loads,
    states,
    lines,
    advance: (ms: number) => {
      now += ms;
    },
    fail: (error: Error | null) => {
      failing = error;
    },
    /** Holds every load until release() is called. */
    hold: () => {
      pending = [];
    },
    release: () => {
      const waiting = pending ?? [];
      pending = null;
      for (const resolve of waiting) resolve();
    },
  };
}

const MAINTENANCE: NamespaceState = { state: 'maintenance' };

describe('StateCache', () => {
  it('misses, then answers synchronously from a fresh entry, absent keys included', async () => {
    const t = cacheWith();
    expect(t.cache.peek('acme')).toBeUndefined();
    expect(await t.cache.get('acme')).toBeNull();
    expect(t.cache.peek('acme')).toBeNull(); // "writable" is cached too
    expect(await t.cache.get('acme')).toBeNull();
    expect(t.loads).toEqual(['acme']);
  });

  it('shares one load among concurrent misses for a key (single-flight)', async () => {
    const t = cacheWith();
    t.hold();
    const answers = Promise.all(Array.from({ length: 100 }, () => t.cache.get('acme')));
    await Promise.resolve();
    t.release();
    expect(await answers).toHaveLength(100);
    expect(t.loads).toEqual(['acme']);
  });

  it('re-reads after ttl', async () => {
    const t = cacheWith();
    await t.cache.get('acme');
    t.advance(1000);
    expect(t.cache.peek('acme')).toBeNull();
    t.advance(1);
    expect(t.cache.peek('acme')).toBeUndefined();
    await t.cache.get('acme');
    expect(t.loads).toHaveLength(2);
  });

  it('invalidateAll() ages every entry at once, without dropping it', async () => {
    const t = cacheWith();
    await t.cache.get('acme');
    expect(t.cache.peek('acme')).toBeNull();
    t.cache.invalidateAll();
    expect(t.cache.peek('acme')).toBeUndefined();
    expect(t.cache.size).toBe(1); // still there for stale-if-error
  });

  it('never serves an entry past the key TTL it was read with', async () => {
    const t = cacheWith({ ttl: 30_000 });
    t.states.set('acme', { state: 'maintenance', expiresAt: new Date(1_000_000 + 500) });
    expect((await t.cache.get('acme'))?.state).toBe('maintenance');
    t.advance(499);
    expect(t.cache.peek('acme')?.state).toBe('maintenance');
    t.advance(1);
    expect(t.cache.peek('acme')).toBeUndefined();
  });

  it('invalidate() drops the entry and re-reads it, logging the transition as learned by push', async () => {
    const t = cacheWith();
    await t.cache.get('acme');
    t.states.set('acme', MAINTENANCE);
    t.cache.invalidate('acme');
    expect(t.cache.peek('acme')).toBeUndefined();
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.cache.peek('acme')?.state).toBe('maintenance');
    expect(t.lines).toContainEqual({
      level: 'info',
      object: { namespace: 'acme', state: 'maintenance', via: 'push' },
      message: 'namespace-read-only: namespace entered maintenance',
    });
  });

  it('logs a transition noticed on expiry as learned by ttl', async () => {
    const t = cacheWith();
    t.states.set('acme', MAINTENANCE);
    await t.cache.get('acme');
    t.states.delete('acme');
    t.advance(1001);
    expect(await t.cache.get('acme')).toBeNull();
    expect(t.lines).toContainEqual({
      level: 'info',
      object: { namespace: 'acme', state: 'writable', via: 'ttl' },
      message: 'namespace-read-only: namespace left maintenance',
    });
  });

  it('an invalidation during a read discards that read and the answer reflects the change', async () => {
    const t = cacheWith();
    t.hold();
    const answer = t.cache.get('acme');
    await Promise.resolve();
    t.states.set('acme', MAINTENANCE);
    t.cache.invalidate('acme'); // the read in flight began before the change
    t.release();
    expect((await answer)?.state).toBe('maintenance');
  });

  it('serves the last-known value when a read fails, until it is staleIfError old', async () => {
    const t = cacheWith();
    t.states.set('acme', MAINTENANCE);
    await t.cache.get('acme');
    t.fail(new Error('redis down'));
    t.advance(4000);
    expect((await t.cache.get('acme'))?.state).toBe('maintenance');
    t.advance(1001);
    await expect(t.cache.get('acme')).rejects.toThrow(/too old/);
  });

  it('fails a cold read at once, with the store error, after a single load', async () => {
    const t = cacheWith();
    t.fail(new Error('redis down'));
    await expect(t.cache.get('acme')).rejects.toThrow('redis down');
    expect(t.loads).toEqual(['acme']);
    t.fail(null);
    expect(await t.cache.get('acme')).toBeNull(); // recovers without anything being reset
  });

  it('invalidateAll() makes everything read before it stale', async () => {
    const t = cacheWith();
    await t.cache.get('acme');
    t.cache.invalidateAll();
    expect(t.cache.peek('acme')).toBeUndefined();
    t.advance(1);
    await t.cache.get('acme');
    expect(t.cache.peek('acme')).toBeNull();
  });

  it('warns once per new unrecognised value', async () => {
    const t = cacheWith();
    t.states.set('acme', { state: 'maintenance', unrecognized: 'maintenence' });
    await t.cache.get('acme');
    t.advance(1001);
    await t.cache.get('acme');
    const warnings = t.lines.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.object).toMatchObject({ namespace: 'acme', value: 'maintenence' });
  });

  it('keeps at most max entries', async () => {
    const t = cacheWith({ max: 10 });
    for (let i = 0; i < 25; i++) await t.cache.get(`ns${i}`);
    expect(t.cache.size).toBe(10);
  });
});

describe('Circuit', () => {
  it('opens after the threshold, fails fast during the cool-down, then lets a probe through', () => {
    let now = 1_000_000;
    const circuit = new Circuit(3, 1000, () => now);
    circuit.failed();
    circuit.failed();
    expect(circuit.allows()).toBe(true);
    circuit.failed();
    expect(circuit.allows()).toBe(false);
    expect(circuit.open).toBe(true);
    now += 1000;
    expect(circuit.allows()).toBe(true); // the probe
    circuit.failed();
    expect(circuit.allows()).toBe(false); // a failed probe re-opens at once
    now += 1000;
    circuit.succeeded();
    expect(circuit.allows()).toBe(true);
    circuit.failed();
    expect(circuit.allows()).toBe(true); // the count started again
  });
});

describe('LogLimiter', () => {
  it('logs one line per kind per interval and reports how many it held back', () => {
    const { logger, entries: lines } = recordingLogger();
    const limiter = new LogLimiter(logger, 60_000);
    for (let i = 0; i < 10_000; i++) limiter.error('read', { i }, 'Redis read failed');
    limiter.warn('subscriber', {}, 'subscriber error');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 'error', object: { i: 0 } });
    expect(lines[1]).toMatchObject({ level: 'warn', message: 'subscriber error' });
  });

  it('adds the held-back count to the next line of that kind', async () => {
    const { logger, entries: lines } = recordingLogger();
    const limiter = new LogLimiter(logger, 5);
    limiter.error('read', {}, 'x');
    limiter.error('read', {}, 'x');
    limiter.error('read', {}, 'x');
    await new Promise((resolve) => setTimeout(resolve, 10));
    limiter.error('read', {}, 'x');
    expect(lines.map((l) => l.object)).toEqual([{}, { suppressed: 2 }]);
  });
});
