import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { type VerdictInput, verdict } from '../../src/guard/verdict.js';
import {
  NamespaceReadOnlyError,
  type NamespaceState,
  REFUSAL_CODES,
  type RefusalReason,
  type StateStore,
} from '../../src/index.js';
import type { AllowRule } from '../../src/routing/allowlist.js';
import { toState } from '../../src/state/values.js';
import { expressVersions, guardedApp } from '../helpers/apps.js';
import { recordingLogger } from '../helpers/logger.js';

/**
 * One verdict for the middleware and the programmatic checks. The table below drives both with
 * the same inputs — every kind of state value, a failing store under each policy, a held or
 * lapsed fence lease, an allowlisted route or not — and requires the same outcome from each, and
 * the outcome the rules state.
 */

const OWN: readonly (string | null)[] = [
  null,
  'active',
  'maintenance',
  'maintenence',
  '{"state":"maintenance","message":"Moving"}',
];
const INSTANCE: readonly (string | null)[] = [null, 'active', 'maintenance'];

interface Row {
  readonly own: string | null;
  readonly instance: string | null;
  readonly storeFails: boolean;
  readonly failOpen: boolean;
  readonly lease: boolean;
}

const rows: Row[] = [];
for (const own of OWN) {
  for (const instance of INSTANCE) {
    for (const lease of [true, false])
      rows.push({ own, instance, storeFails: false, failOpen: false, lease });
  }
}
rows.push({ own: 'maintenance', instance: null, storeFails: true, failOpen: false, lease: true });
rows.push({ own: 'maintenance', instance: null, storeFails: true, failOpen: false, lease: false });
// `onStoreError: 'open'` cannot be combined with the fence, so it has no lease.
rows.push({ own: 'maintenance', instance: null, storeFails: true, failOpen: true, lease: true });

/** The rules, in words: what refuses a write to `acme`, in order; `null` admits it. */
function expectedReason(row: Row): RefusalReason | null {
  const closes = (v: string | null) => v !== null && v !== 'active';
  if (row.storeFails) {
    if (!row.failOpen) return 'store-unavailable';
  } else {
    if (row.own === 'maintenence') return 'unrecognized-state';
    if (closes(row.own)) return 'maintenance';
    if (closes(row.instance)) return 'instance-maintenance';
  }
  return row.lease ? null : 'lease-lapsed';
}

/** A store whose states, failure and fence lease the row sets. */
function storeFor(row: Row): StateStore {
  const states = new Map<string, NamespaceState>();
  if (row.own !== null) states.set('acme', toState(row.own));
  if (row.instance !== null) states.set('*', toState(row.instance));
  const read = (key: string) => states.get(key) ?? null;
  return {
    get: async (key) => {
      if (row.storeFails) throw new Error('store down');
      return read(key);
    },
    peek: (key) => (row.storeFails ? undefined : read(key)),
    set: async () => undefined,
    delete: async () => undefined,
    register: () => ({ holdsLease: () => row.lease, release: async () => undefined }),
  };
}

const name = (row: Row) =>
  `own ${row.own ?? 'none'}, instance ${row.instance ?? 'none'}` +
  `${row.storeFails ? `, store failing (${row.failOpen ? 'open' : 'closed'})` : ''}` +
  `, lease ${row.lease ? 'held' : 'lapsed'}`;

describe.each(expressVersions)('the middleware and the checks agree ($name)', ({ express }) => {
  it.each(rows.map((row) => ({ row, title: name(row) })))('$title', async ({ row }) => {
    const expected = expectedReason(row);
    const { logger, logged } = recordingLogger();
    const { app, guard, handled } = guardedApp(express, {
      store: storeFor(row),
      logger,
      onStoreError: row.failOpen ? 'open' : 'closed',
      fence: !row.failOpen,
    });

    // The middleware, on a route no allowlist rule matches.
    const res = await request(app).post('/acme/issues');
    // Whatever its level (`warn` for a failing store or a lapsed lease, `info` for a state).
    const blocked = logged().filter((e) => e.message === 'namespace-read-only: write blocked');
    const refusedBy = res.status === 503 ? blocked.at(-1)?.object.reason : null;
    // The checks, for the same namespace.
    const readOnly = await guard.isReadOnly('acme');
    const thrown = await guard.assertWritable('acme').then(
      () => null,
      (error: unknown) => error,
    );

    expect(refusedBy).toBe(expected);
    expect(readOnly).toBe(expected !== null);
    if (expected === null) {
      expect(thrown).toBeNull();
      expect(handled).toHaveLength(1);
    } else {
      expect(thrown).toBeInstanceOf(NamespaceReadOnlyError);
      expect((thrown as NamespaceReadOnlyError).refusal).toBe(expected);
      expect((thrown as NamespaceReadOnlyError).code).toBe(REFUSAL_CODES[expected]);
      expect(handled).toHaveLength(0);
    }

    // An allowlisted route: the middleware lets it through whatever would have refused it; a
    // check names no route, so its answer is unchanged.
    const fetch = await request(app).post('/acme/proj.git/git-upload-pack');
    expect(fetch.status).toBe(200);
    expect(await guard.isReadOnly('acme')).toBe(expected !== null);
  });
});

describe('verdict()', () => {
  const rule: AllowRule = { method: 'POST', path: '/x' };
  const base: VerdictInput<string> = {
    namespace: 'acme',
    own: null,
    instance: null,
    failOpen: false,
    holdsLease: true,
    now: Date.now(),
    route: '/acme/x',
    allowedBy: () => null,
  };
  const maintenance = toState('maintenance');

  it('asks the allowlist only for a write it would refuse', () => {
    let asked = 0;
    const allowedBy = () => {
      asked++;
      return rule;
    };
    expect(verdict({ ...base, allowedBy })).toEqual({ admit: true, via: 'open' });
    expect(asked).toBe(0);
    expect(verdict({ ...base, own: maintenance, allowedBy })).toMatchObject({
      admit: true,
      via: 'allowlist',
      rule,
      block: { reason: 'maintenance', namespace: 'acme' },
    });
    expect(asked).toBe(1);
  });

  it('never applies the allowlist without a route', () => {
    const v = verdict({ ...base, own: maintenance, route: null, allowedBy: () => rule });
    expect(v).toMatchObject({ admit: false, block: { reason: 'maintenance' } });
  });

  it("prefers the namespace's own maintenance (its message is the more specific)", () => {
    const own = toState('{"state":"maintenance","message":"Moving acme"}');
    const v = verdict({ ...base, own, instance: toState('maintenance') });
    expect(v).toMatchObject({ admit: false, block: { reason: 'maintenance', state: own } });
  });

  it('applies only the instance state to a path that names no namespace', () => {
    expect(verdict({ ...base, namespace: null, own: maintenance })).toEqual({
      admit: true,
      via: 'open',
    });
    expect(verdict({ ...base, namespace: null, instance: maintenance })).toMatchObject({
      admit: false,
      block: { reason: 'instance-maintenance', namespace: '*' },
    });
  });

  it('refuses an unknowable target before looking at any state', () => {
    const v = verdict({
      ...base,
      unknowable: { reason: 'unresolvable-id', detail: 'no resolveId option' },
      readError: new Error('store down'),
      failOpen: true,
    });
    expect(v).toMatchObject({
      admit: false,
      block: { reason: 'unresolvable-id', namespace: null, detail: 'no resolveId option' },
    });
  });

  it('refuses an unknowable target only while something may be in maintenance', () => {
    const unknowable = { reason: 'invalid-namespace', detail: 'undecodable' } as const;
    expect(verdict({ ...base, namespace: null, unknowable, nothingClosed: true })).toEqual({
      admit: true,
      via: 'open',
    });
    for (const nothingClosed of [false, undefined]) {
      expect(verdict({ ...base, namespace: null, unknowable, nothingClosed })).toMatchObject({
        admit: false,
        block: { reason: 'invalid-namespace', detail: 'undecodable' },
      });
    }
    // The fence's lease still binds a write it cannot attribute.
    expect(
      verdict({ ...base, namespace: null, unknowable, nothingClosed: true, holdsLease: false }),
    ).toMatchObject({ admit: false, block: { reason: 'lease-lapsed' } });
  });

  it('admits a failed read under failOpen, saying so, unless the lease lapsed', () => {
    const error = new Error('store down');
    expect(verdict({ ...base, readError: error, failOpen: true })).toEqual({
      admit: true,
      via: 'store-error-open',
      error,
    });
    expect(verdict({ ...base, readError: error, failOpen: true, holdsLease: false })).toMatchObject(
      { admit: false, block: { reason: 'lease-lapsed' } },
    );
  });
});
