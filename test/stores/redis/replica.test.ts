import { afterEach, describe, expect, it, vi } from 'vitest';
import { Replica } from '../../../src/stores/redis/replica.js';

describe('Replica', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers null for a key it does not hold, and the parsed state for one it does', () => {
    const r = new Replica();
    expect(r.get('acme')).toBeNull();
    r.apply('acme', '{"state":"maintenance","message":"Moving"}', -1);
    expect(r.get('acme')).toEqual({ state: 'maintenance', message: 'Moving' });
    r.apply('acme', null, Number.NaN);
    expect(r.get('acme')).toBeNull();
    expect(r.size).toBe(0);
  });

  it('anyClosed follows every change, active and garbage values included', () => {
    const r = new Replica();
    expect(r.anyClosed()).toBe(false);
    r.apply('a', 'active', -1);
    expect(r.anyClosed()).toBe(false);
    r.apply('a', 'maintenence', -1); // a typo closes
    expect(r.anyClosed()).toBe(true);
    r.apply('b', 'maintenance', -1);
    r.apply('a', 'active', -1);
    expect(r.anyClosed()).toBe(true);
    r.delete('b');
    expect(r.anyClosed()).toBe(false);
    r.delete('b'); // twice: no negative count
    r.apply('c', 'maintenance', -1);
    expect(r.anyClosed()).toBe(true);
  });

  it('a state with a key TTL runs out by itself, for get and for anyClosed', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const r = new Replica();
    r.apply('acme', 'maintenance', 500);
    expect(r.get('acme')?.expiresAt?.getTime()).toBe(1_000_500);
    expect(r.anyClosed()).toBe(true);
    vi.setSystemTime(1_000_500);
    expect(r.anyClosed()).toBe(false);
    expect(r.get('acme')).toBeNull();
    // A closed state without a TTL replacing one with a TTL, and back.
    r.apply('x', 'maintenance', 100);
    r.apply('x', 'maintenance', -1);
    vi.setSystemTime(2_000_000);
    expect(r.anyClosed()).toBe(true);
    r.apply('x', 'maintenance', 100);
    vi.setSystemTime(2_000_100);
    expect(r.anyClosed()).toBe(false);
  });

  it('shares one parsed state among keys with the same value and no TTL', () => {
    const r = new Replica();
    for (let i = 0; i < 100; i++) r.apply(`ns${i}`, 'maintenance', -1);
    expect(r.get('ns1')).toBe(r.get('ns99'));
    expect(Object.isFrozen(r.get('ns1'))).toBe(true);
  });

  it('replace() drops what the load did not find and reports what changed', () => {
    const r = new Replica();
    r.apply('gone', 'maintenance', -1);
    r.apply('same', 'maintenance', -1);
    const changed = r.replace([
      ['same', 'maintenance', -1],
      ['new', 'maintenance', -1],
    ]);
    expect(changed.sort()).toEqual(['gone', 'new']);
    expect(r.get('gone')).toBeNull();
    expect([...r.keys()].sort()).toEqual(['new', 'same']);
    expect(r.anyClosed()).toBe(true);
    r.replace([]);
    expect(r.anyClosed()).toBe(false);
  });
});
