import { describe, expect, it } from 'vitest';
import { LogLimiter } from '../../src/logger.js';
import type { NamespaceState } from '../../src/state/values.js';
import { ChangeListeners, KnownStates, sameState } from '../../src/stores/changes.js';
import type { StateChange } from '../../src/stores/store.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * What a store reports to `onStateChange`, on its own: when two states are the same, and how a
 * process that learns states in several places reports each change once.
 */

const M: NamespaceState = { state: 'maintenance' };
const A: NamespaceState = { state: 'active' };

function known(max = 100) {
  const changes: StateChange[] = [];
  const listeners = new ChangeListeners(new LogLimiter(recordingLogger().logger));
  listeners.add((c) => changes.push(c));
  const states = new KnownStates(listeners, max);
  const brief = () =>
    changes.map((c) => [c.namespace, c.from?.state ?? null, c.to?.state ?? null, c.via]);
  return { states, changes, brief };
}

describe('sameState', () => {
  it('compares every field, dates by time, and tolerates a TTL end read twice', () => {
    const end = new Date(1_000_000);
    expect(sameState(null, null)).toBe(true);
    expect(sameState(M, null)).toBe(false);
    expect(sameState(M, { state: 'maintenance' })).toBe(true);
    expect(sameState(M, A)).toBe(false);
    expect(sameState(M, { state: 'maintenance', message: 'x' })).toBe(false);
    expect(sameState({ ...M, until: end }, { ...M, until: new Date(1_000_000) })).toBe(true);
    expect(sameState({ ...M, until: end }, { ...M, until: new Date(1_000_001) })).toBe(false);
    // The same key read twice: its end differs by the reads' latency.
    expect(sameState({ ...M, expiresAt: end }, { ...M, expiresAt: new Date(1_000_400) })).toBe(
      true,
    );
    // EXPIRE moved it: a change. A TTL added or removed: a change.
    expect(sameState({ ...M, expiresAt: end }, { ...M, expiresAt: new Date(1_060_000) })).toBe(
      false,
    );
    expect(sameState({ ...M, expiresAt: end }, M)).toBe(false);
  });
});

describe('KnownStates', () => {
  it('before complete knowledge, a key read for the first time is news, not a change', () => {
    const { states, brief } = known();
    states.learned('acme', M, 'miss');
    states.learned('beta', null, 'miss');
    expect(brief()).toEqual([]);
    // The cache held an earlier (null) value of beta: that is a change.
    states.learned('beta', M, 'ttl', true);
    states.learned('acme', null, 'ttl', true);
    expect(brief()).toEqual([
      ['beta', null, 'maintenance', 'ttl'],
      ['acme', 'maintenance', null, 'ttl'],
    ]);
  });

  it('the first load records silently; later loads report what changed, absent keys included', () => {
    const { states, brief } = known();
    states.loaded([
      ['acme', M],
      ['beta', A],
    ]);
    expect(brief()).toEqual([]);
    states.loaded([
      ['acme', M],
      ['gamma', M],
    ]);
    expect(brief()).toEqual([
      ['gamma', null, 'maintenance', 'load'],
      ['beta', 'active', null, 'load'],
    ]);
    // Complete now: a key never seen had no state.
    states.learned('delta', M, 'push');
    expect(brief()[2]).toEqual(['delta', null, 'maintenance', 'push']);
  });

  it('reports each change once, whichever place learns of it first', () => {
    const { states, brief } = known();
    states.loaded([]);
    states.made('acme', null, M); // this process's own change
    states.learned('acme', M, 'push'); // ... pushed back to it
    states.learned('acme', M, 'ttl', true); // ... and read by the cache
    states.learned('acme', null, 'push');
    states.loaded([]); // a reload agrees
    expect(brief()).toEqual([
      ['acme', null, 'maintenance', 'local'],
      ['acme', 'maintenance', null, 'push'],
    ]);
  });

  it('keeps at most `max` keys, forgetting the oldest', () => {
    const { states, brief } = known(2);
    states.loaded([
      ['a', M],
      ['b', M],
      ['c', M],
    ]);
    states.learned('a', M, 'push'); // forgotten: reported as from null
    expect(brief()).toEqual([['a', null, 'maintenance', 'push']]);
  });
});
