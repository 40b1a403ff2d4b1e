import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Block, sendBlocked, toError } from './answer.js';
import { InflightWrites } from './inflight.js';
import { LogLimiter } from './log-limiter.js';
import {
  hasWriteOverrideHeader,
  hasWriteOverrideQuery,
  isReadMethod,
  overrideMethods,
} from './method.js';
import { namespaceKey, rootNamespace } from './namespace-name.js';
import { type NamespaceReadOnlyOptions, resolveOptions } from './options.js';
import { hasDotSegment, parseTarget, routerPathname, stripPrefix } from './request-path.js';
import type { Target } from './routes.js';
import { type Closure, type MaybePromise, StateReader } from './state-reader.js';
import type { StateStore } from './store.js';

/**
 * The request pipeline, top to bottom:
 *   1. classify the method (reads pass, unless they start a write);
 *   2. resolve the root namespace from the path the router will match;
 *   3. read the namespace's and the instance's state (memoised, synchronous when cached);
 *   4. let allowlisted routes through;
 *   5. answer a blocked write with 503 before anything reads its body;
 *   6. count an admitted write in flight until its response is over (only with a store that
 *      takes part in the migration fence).
 * The allowlist is consulted only when a write would be blocked, so an ordinary write costs a
 * parse, a state lookup and (with the fence) one listener, and nothing more.
 */

export type NextFunction = (error?: unknown) => void;

export interface NamespaceReadOnlyMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  /** True when writes to `namespace` (or, with `'*'`, to the instance) are refused right now. */
  isReadOnly(namespace: string, req?: IncomingMessage): Promise<boolean>;
  /** Throws `NamespaceReadOnlyError` when writes to `namespace` are refused. */
  assertWritable(namespace: string, req?: IncomingMessage): Promise<void>;
  /**
   * Runs `work` as an admitted write to `namespace` for code outside a request (jobs,
   * consumers): refused with `NamespaceReadOnlyError` when the namespace is read-only, counted
   * as in flight (so the migration fence waits for it) while it runs.
   */
  runWrite<T>(namespace: string, work: () => T | Promise<T>): Promise<T>;
  /** The store this guard reads. */
  readonly store: StateStore;
  /** Releases what the store holds open (subscriptions, timers); the caller's clients stay open. */
  close(): Promise<void>;
}

const BLOCKED = 'namespace-read-only: write blocked';
const UNPARSABLE: Target = Object.freeze({ type: 'invalid', reason: 'unparsable-target' });
const internalError: Block = Object.freeze({ reason: 'internal-error', namespace: null });

export function namespaceReadOnly(options?: NamespaceReadOnlyOptions): NamespaceReadOnlyMiddleware {
  const config = resolveOptions(options);
  const { routes, logger } = config;
  const reader = new StateReader(config.store);
  const troubles = new LogLimiter(logger);
  // Writes this process admitted, for the migration fence (only stores that support it).
  const inflight = new InflightWrites();
  const registration = config.store.register?.(inflight) ?? null;

  function namespaceReadOnlyMiddleware(
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
  ): void {
    try {
      const method = req.method ?? '';
      if (isReadMethod(method) && !readStartsWrite(req)) return next();

      const raw = routerPathname(req);
      const pathname = raw === null ? null : stripPrefix(req, raw, config.relativeUrlRoot);
      const request: Pending = { req, res, next, method, pathname };
      if (raw !== null && hasDotSegment(raw)) {
        // The router leaves dot segments alone, but a proxy, a framework or a handler joining
        // paths may resolve them, and then neither the namespace nor the route is the one the
        // router saw: refused, and not even the allowlist applies.
        return refuse(
          { ...request, routable: false },
          { reason: 'invalid-namespace', namespace: null, detail: 'dot-segment' },
        );
      }
      const target = pathname === null ? UNPARSABLE : routes.resolve(pathname);

      switch (target.type) {
        case 'none':
          return settle(reader.closure(null, req), request, null);
        case 'namespace':
          return settle(reader.closure(target.namespace, req), request, target.namespace);
        case 'invalid':
          return refuse(request, {
            reason: 'invalid-namespace',
            namespace: null,
            detail: target.reason,
          });
        case 'id':
          return resolveNumericId(target.kind, target.id, request);
      }
    } catch (error) {
      // A bug, or a user callback that threw: fail closed rather than let the write through.
      logger.error({ err: error }, 'namespace-read-only: guard failed; write refused');
      refuse(
        { req, res, next, method: req.method ?? '', pathname: null },
        {
          reason: 'internal-error',
          namespace: null,
        },
      );
    }
  }

  /** A GET that opens a push, or a read carrying a method override that names a write. */
  function readStartsWrite(req: IncomingMessage): boolean {
    if (hasWriteOverrideHeader(req.headers)) return true;
    const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '';
    if (url.indexOf('?') === -1) return false;
    const parsed = parseTarget(req);
    const search = typeof parsed?.query === 'string' ? parsed.query : null;
    if (search === null) return false;
    if (hasWriteOverrideQuery(search)) return true;
    if (routes.startsWrite === undefined || typeof parsed?.pathname !== 'string') return false;
    return routes.startsWrite(stripPrefix(req, parsed.pathname, config.relativeUrlRoot), search);
  }

  function resolveNumericId(
    kind: 'project' | 'group' | 'namespace',
    id: string,
    request: Pending,
  ): void {
    const { resolveId } = config;
    if (resolveId === undefined) {
      return refuse(request, {
        reason: 'unresolvable-id',
        namespace: null,
        detail: 'no resolveId option',
      });
    }
    let resolved: MaybePromise<string | null | undefined>;
    try {
      resolved = resolveId(kind, id);
    } catch (error) {
      return storeFailed(request, null, error);
    }
    if (!(resolved instanceof Promise)) return withFullPath(resolved, request);
    resolved
      .then(
        (fullPath) => withFullPath(fullPath, request),
        (error: unknown) => storeFailed(request, null, error),
      )
      .catch((error: unknown) => failedLate(request, error));
  }

  function withFullPath(fullPath: string | null | undefined, request: Pending): void {
    try {
      if (fullPath === null || fullPath === undefined) {
        // No such project or group: the application will answer 404, but the instance state
        // still applies to the write.
        return settle(reader.closure(null, request.req), request, null);
      }
      const root = typeof fullPath === 'string' ? rootNamespace(fullPath) : null;
      if (root === null || !root.ok) {
        return refuse(request, {
          reason: 'invalid-namespace',
          namespace: null,
          detail: 'resolveId result',
        });
      }
      settle(reader.closure(root.value, request.req), request, root.value);
    } catch (error) {
      storeFailed(request, null, error);
    }
  }

  function settle(
    closure: MaybePromise<Closure | null>,
    request: Pending,
    namespace: string | null,
  ): void {
    if (!(closure instanceof Promise)) return decide(closure, request, namespace);
    // Counted in flight while it is being decided: one of its two reads may already hold the old,
    // open state, so a fence that finds the namespace closed before the other read returns must
    // still wait for this write (it is admitted, and counted again, before this count ends).
    const deciding = registration === null ? null : inflight.enter(namespace);
    closure
      .then(
        (value) => decide(value, request, namespace),
        (error: unknown) => storeFailed(request, namespace, error),
      )
      .catch((error: unknown) => failedLate(request, error))
      .finally(() => deciding?.());
  }

  /**
   * Deciding threw after the middleware had returned (a bug, or a logger that threw): refuse the
   * write, and never leave a rejected promise behind (Express 4 on Node 20 crashes on one).
   */
  function failedLate(request: Pending, error: unknown): void {
    try {
      logger.error({ err: error }, 'namespace-read-only: guard failed; write refused');
    } catch {
      // The logger may be what failed; answering matters more than logging.
    }
    try {
      sendBlocked(request.req, request.res, request.pathname, internalError, config);
    } catch {
      request.res.destroy();
    }
  }

  function decide(closure: Closure | null, request: Pending, target: string | null): void {
    if (closure === null) return admit(request, target);
    const { namespace, state } = closure;
    const reason =
      state.unrecognized !== undefined
        ? 'unrecognized-state'
        : namespace === '*'
          ? 'instance-maintenance'
          : 'maintenance';
    refuse(request, { reason, namespace, state });
  }

  /** `target`: the namespace the write goes to, when known (it is counted there if let through). */
  function storeFailed(request: Pending, target: string | null, error: unknown): void {
    if (config.failOpen) {
      troubles.error(
        'store-error-open',
        { err: error, method: request.method, path: shortPath(request.pathname) },
        'namespace-read-only: state unreadable; write allowed (onStoreError: open)',
      );
      return admit(request, target);
    }
    refuse(request, { reason: 'store-error', namespace: null, detail: String(error) });
  }

  /** Lets the write through, counted in flight until its response is over. */
  function admit(request: Pending, namespace: string | null): void {
    if (registration !== null) {
      if (!registration.holdsLease()) {
        return refuse(request, {
          reason: 'store-error',
          namespace,
          detail: 'fence heartbeat lapsed',
        });
      }
      inflight.admit(namespace, request.res);
    }
    request.next();
  }

  /** Blocks the write unless its route is allowlisted. */
  function refuse(request: Pending, block: Block): void {
    const { req, res, method, pathname } = request;
    const rule =
      pathname === null || request.routable === false ? null : allowedBy(req, method, pathname);
    const path = shortPath(pathname);
    if (rule !== null) {
      logger.debug(
        { method, path, rule: `${String(rule.method)} ${rule.path}`, namespace: block.namespace },
        'namespace-read-only: allowlisted write',
      );
      return request.next();
    }
    const fields = {
      namespace: block.namespace,
      method,
      path,
      reason: block.reason,
      ...(block.detail !== undefined && { detail: block.detail }),
      ...(block.state?.unrecognized !== undefined && { value: block.state.unrecognized }),
      ...(block.state?.reason !== undefined && { stateReason: block.state.reason }),
    };
    // One line per refused write, except while the store is failing: then every write is
    // refused for the same reason, and one line per interval says it without the flood.
    if (block.reason === 'store-error') troubles.warn('store-error', fields, BLOCKED);
    else logger.warn(fields, BLOCKED);
    sendBlocked(req, res, pathname, block, config);
  }

  /**
   * The rule that lets this write through, if any. A method-override middleware behind the guard
   * routes the request as the method the override names, so a rule must allow every method the
   * request could become, not only the one on the request line: `POST .../-/compare` with
   * `X-HTTP-Method-Override: PUT` is a PUT to whatever route answers PUT there.
   */
  function allowedBy(req: IncomingMessage, method: string, pathname: string) {
    try {
      const rule = config.allowedBy(req, method, pathname);
      if (rule === null) return null;
      const parsed = parseTarget(req);
      const search = typeof parsed?.query === 'string' ? parsed.query : null;
      for (const other of overrideMethods(req.headers, search)) {
        if (other !== method && config.allowedBy(req, other, pathname) === null) return null;
      }
      return rule;
    } catch (error) {
      logger.error(
        { err: error },
        'namespace-read-only: allowlist condition threw; treated as not allowed',
      );
      return null;
    }
  }

  /**
   * The programmatic checks' verdict, under the same rules as the middleware: the instance
   * state applies, and an unreadable state follows `onStoreError`.
   */
  async function blockFor(namespace: string, req?: IncomingMessage): Promise<Block | null> {
    const key = namespaceKey(namespace);
    let closure: Closure | null;
    try {
      closure = await reader.closure(key === '*' ? null : key, req);
    } catch (error) {
      if (config.failOpen) {
        troubles.error(
          'check-store-error-open',
          { err: error, namespace: key },
          'namespace-read-only: state unreadable; check passed (onStoreError: open)',
        );
        return null;
      }
      troubles.warn(
        'check-store-error',
        { err: error, namespace: key },
        'namespace-read-only: state unreadable; check refused',
      );
      return { reason: 'store-error', namespace: key, detail: String(error) };
    }
    if (closure === null) return null;
    return {
      reason: closure.namespace === '*' ? 'instance-maintenance' : 'maintenance',
      namespace: closure.namespace,
      state: closure.state,
    };
  }

  const guard = namespaceReadOnlyMiddleware as NamespaceReadOnlyMiddleware;
  Object.defineProperties(guard, {
    store: { value: config.store, enumerable: true },
    isReadOnly: {
      value: async (namespace: string, req?: IncomingMessage) =>
        (await blockFor(namespace, req)) !== null,
    },
    assertWritable: {
      value: async (namespace: string, req?: IncomingMessage) => {
        const block = await blockFor(namespace, req);
        if (block !== null) throw toError(block, config);
      },
    },
    runWrite: {
      value: async <T>(namespace: string, work: () => T | Promise<T>): Promise<T> => {
        const key = namespaceKey(namespace);
        // Counted from before the check: its two reads may come back at different times, one of
        // them still holding the old, open state, and a fence that finds the namespace closed in
        // between must find this write in flight.
        const leave = inflight.enter(key === '*' ? null : key);
        try {
          const block = await blockFor(namespace);
          if (block !== null) throw toError(block, config);
          if (registration !== null && !registration.holdsLease()) {
            throw toError(
              { reason: 'store-error', namespace: key, detail: 'fence heartbeat lapsed' },
              config,
            );
          }
          return await work();
        } finally {
          leave();
        }
      },
    },
    close: { value: async () => config.store.close?.() },
  });
  return guard;
}

interface Pending {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly next: NextFunction;
  readonly method: string;
  readonly pathname: string | null;
  /** `false` when the route cannot be identified reliably, so no allowlist rule applies. */
  readonly routable?: false;
}

const MAX_LOGGED_PATH = 512;

function shortPath(pathname: string | null): string | null {
  if (pathname === null || pathname.length <= MAX_LOGGED_PATH) return pathname;
  return `${pathname.slice(0, MAX_LOGGED_PATH)}…`;
}
