import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type MemoryStateStore,
  type NamespaceReadOnlyMiddleware,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
  OptionsError,
  type SetOptions,
  type StateEntry,
  type StateInput,
} from 'namespace-read-only';

/** The guard's options, less `store`: a test guard always reads its own `MemoryStateStore`. */
export type TestGuardOptions<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> = Omit<NamespaceReadOnlyOptions<Req, Res>, 'store'>;

/** A guard (mount it as any other) on a fresh `MemoryStateStore`, with a test's controls. */
export interface TestGuard extends NamespaceReadOnlyMiddleware {
  readonly store: MemoryStateStore;
  /** Puts `namespace` (`'*'`: the instance) into `state`, `'maintenance'` by default. */
  enable(namespace: string, state?: StateInput, options?: SetOptions): Promise<void>;
  /** Makes `namespace` writable again. */
  disable(namespace: string): Promise<void>;
  /** Every namespace with a state, sorted: `[{ namespace, state }]`. */
  list(): Promise<StateEntry[]>;
  /** Removes every state: the guard refuses nothing any more. */
  clear(): Promise<void>;
}

/**
 * `namespaceReadOnly(options)` on a store of its own, silent unless `logger` is given (a test's
 * refusals are expected, not news), with `enable`, `disable`, `list` and `clear`. Create one per
 * test, or `clear()` it between tests: states would otherwise leak from one test to the next.
 */
export function createTestGuard<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
>(options?: TestGuardOptions<Req, Res>): TestGuard {
  const given: unknown = options ?? {};
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new OptionsError('options', 'an object', options, 'createTestGuard option');
  }
  const { store: unwanted, ...rest } = given as TestGuardOptions<Req, Res> & {
    readonly store?: unknown;
  };
  if (unwanted !== undefined) {
    throw new OptionsError(
      'store',
      'absent (the test guard makes its own MemoryStateStore; give your store to namespaceReadOnly instead)',
      unwanted,
      'createTestGuard option',
    );
  }
  // The guard creates the store when given none: a `MemoryStateStore` logging where it does.
  const guard = namespaceReadOnly<Req, Res>({ ...rest, logger: rest.logger ?? false });
  const store = guard.store as MemoryStateStore;
  return Object.defineProperties(guard, {
    enable: {
      value: (namespace: string, state: StateInput = 'maintenance', setOptions?: SetOptions) =>
        store.set(namespace, state, setOptions),
    },
    disable: { value: (namespace: string) => store.delete(namespace) },
    list: { value: () => store.list() },
    clear: { value: () => store.clear() },
  }) as TestGuard;
}
