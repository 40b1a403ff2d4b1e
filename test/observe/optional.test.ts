import { describe, expect, it } from 'vitest';
import { loadOptional } from '../../src/observe/optional.js';

/** Optional peers: a module that is not installed is `null`, resolved once. */
describe('loadOptional', () => {
  it('loads an installed module from the package, and remembers it', () => {
    const client = loadOptional<{ Registry: unknown }>('prom-client');
    expect(typeof client?.Registry).toBe('function');
    expect(loadOptional('prom-client')).toBe(client);
  });

  it('is null for a module that is not installed', () => {
    expect(loadOptional('nsro-certainly-not-installed')).toBeNull();
    expect(loadOptional('nsro-certainly-not-installed')).toBeNull();
  });
});
