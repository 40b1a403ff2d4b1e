import type { IncomingMessage, ServerResponse } from 'node:http';
import { InflightWrites } from '../fence/inflight.js';
import { type NamespaceReadOnlyOptions, resolveOptions } from '../options.js';
import {
  hasWriteOverrideHeader,
  hasWriteOverrideQuery,
  isReadMethod,
  overrideMethods,
} from '../request/method.js';
import { rootNamespace } from '../request/namespace-name.js';
import { hasDotSegment, parseTarget, routerPathname, stripPrefix } from '../request/path.js';
import type { AllowRule } from '../routing/allowlist.js';
import type { IdKind } from '../routing/target.js';
import { type MaybePromise, RequestMemo } from '../state/request-memo.js';
import { INSTANCE, type NamespaceState } from '../state/values.js';
import type { StateStore } from '../stores/store.js';
import { sendBlocked } from './answer.js';
import { type Checks, createChecks } from './checks.js';
import { type Unknowable, verdict } from './verdict.js';
import { VerdictLog } from './verdict-log.js';

/**
 * The request pipeline, top to bottom, as wiring around the verdict:
 *   1. classify the method (reads pass, unless they start a write);
 *   2. resolve the root namespace from the path the router will match;
 *   3. read the namespace's and the instance's state (memoised, synchronous when cached);
 *   4. ask the verdict (which consults the allowlist only for a write it would refuse);
 *   5. answer a refused write with 503 before anything reads its body, or let it through,
 *      counted in flight until its response is over (with a store that runs the fence).
 * Nothing here throws into Express, and nothing returns a promise (Express 4 on Node 20 crashes
 * on a rejected one).
 */

export type NextFunction = (error?: unknown) => void;

export interface NamespaceReadOnlyMiddleware extends Checks {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  /** The store this guard reads. */
  readonly store: StateStore;
  /**
   * Stops this guard's part in the migration fence. Closes the store only when the guard
   * created it (the default); a store you passed in is yours to close, as other guards may
   * share it.
   */
  close(): Promise<void>;
}

/** One write being decided. */
interface Pending {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly next: NextFunction;
  readonly method: string;
  /** The path the application routes (mount and `relativeUrlRoot` removed), `null` if none. */
  readonly pathname: string | null;
}

const UNPARSABLE: Unknowable = { reason: 'invalid-namespace', detail: 'unparsable-target' };
const DOT_SEGMENT: Unknowable = { reason: 'invalid-namespace', detail: 'dot-segment' };
const NO_RESOLVER: Unknowable = { reason: 'unresolvable-id', detail: 'no resolveId option' };
const BAD_RESOLVED: Unknowable = { reason: 'invalid-namespace', detail: 'resolveId result' };

export function namespaceReadOnly(options?: NamespaceReadOnlyOptions): NamespaceReadOnlyMiddleware {
  const config = resolveOptions(options);
  const { routes } = config;
  const memo = new RequestMemo(config.store);
  const log = new VerdictLog(config.logger);
  // Writes this guard admitted, for the migration fence (only stores that support it).
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
        return cannotTell(request, DOT_SEGMENT, false);
      }
      if (pathname === null) return cannotTell(request, UNPARSABLE);
      const target = routes.resolve(pathname);
      switch (target.type) {
        case 'none':
          return lookUp(request, null);
        case 'namespace':
          return lookUp(request, target.namespace);
        case 'invalid':
          return cannotTell(request, { reason: 'invalid-namespace', detail: target.reason });
        case 'id':
          return resolveNumericId(request, target.kind, target.id);
      }
    } catch (error) {
      failed({ req, res, next, method: req.method ?? '', pathname: null }, error);
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

  function resolveNumericId(request: Pending, kind: IdKind, id: string): void {
    const { resolveId } = config;
    if (resolveId === undefined) {
      return cannotTell(request, NO_RESOLVER);
    }
    // A lookup that fails is a store failure: `onStoreError` decides.
    let resolved: MaybePromise<string | null | undefined>;
    try {
      resolved = resolveId(kind, id);
    } catch (error) {
      return lookupFailed(request, null, error ?? 'resolveId threw');
    }
    if (!(resolved instanceof Promise)) return withFullPath(request, resolved);
    resolved
      .then(
        (fullPath) => withFullPath(request, fullPath),
        (error: unknown) => lookupFailed(request, null, error ?? 'resolveId rejected'),
      )
      .catch((error: unknown) => failed(request, error));
  }

  function withFullPath(request: Pending, fullPath: string | null | undefined): void {
    // No such project or group: the application will answer 404, but the instance state
    // still applies to the write.
    if (fullPath === null || fullPath === undefined) return lookUp(request, null);
    const root = typeof fullPath === 'string' ? rootNamespace(fullPath) : null;
    if (root === null || !root.ok) return cannotTell(request, BAD_RESOLVED);
    lookUp(request, root.value);
  }

  /** Reads the states the write depends on, then decides: synchronously when both are cached. */
  function lookUp(request: Pending, namespace: string | null): void {
    const own = namespace === null ? null : memo.read(namespace, request.req);
    const instance = memo.read(INSTANCE, request.req);
    if (!(own instanceof Promise) && !(instance instanceof Promise)) {
      return decide(request, namespace, own, instance, undefined);
    }
    // Counted in flight while it is being decided: one of its two reads may already hold the old,
    // open state, so a fence that finds the namespace closed before the other read returns must
    // still wait for this write (it is admitted, and counted again, before this count ends).
    const deciding = registration === null ? null : inflight.enter(namespace);
    Promise.all([own, instance])
      .then(
        ([o, i]) => decide(request, namespace, o, i, undefined),
        (error: unknown) => lookupFailed(request, namespace, error ?? 'store rejected'),
      )
      .catch((error: unknown) => failed(request, error))
      .finally(() => deciding?.());
  }

  /** The target cannot be trusted: refused without reading any state. */
  function cannotTell(request: Pending, unknowable: Unknowable, routable = true): void {
    decide(request, null, null, null, undefined, unknowable, routable);
  }

  /** A state (or `resolveId`) could not be read: `onStoreError` decides. */
  function lookupFailed(request: Pending, namespace: string | null, error: unknown): void {
    decide(request, namespace, null, null, error);
  }

  /** Asks the verdict, logs it, and carries it out. */
  function decide(
    request: Pending,
    namespace: string | null,
    own: NamespaceState | null,
    instance: NamespaceState | null,
    readError: unknown,
    unknowable?: Unknowable,
    routable = true,
  ): void {
    const v = verdict({
      namespace,
      unknowable,
      own,
      instance,
      readError,
      failOpen: config.failOpen,
      holdsLease: registration === null || registration.holdsLease(),
      route: routable && request.pathname !== null ? request : null,
      allowedBy,
    });
    log.request(v, request);
    if (!v.admit) return sendBlocked(request.req, request.res, request.pathname, v.block, config);
    // Allowlisted writes are not counted: they write nothing the fence protects.
    if (registration !== null && v.via !== 'allowlist') inflight.admit(namespace, request.res);
    request.next();
  }

  /** Deciding threw (a bug, or a user callback that threw): refuse the write, never throw. */
  function failed(request: Pending, error: unknown): void {
    try {
      log.failed(error);
      const block = { reason: 'internal-error', namespace: null } as const;
      sendBlocked(request.req, request.res, request.pathname, block, config);
    } catch {
      request.res.destroy();
    }
  }

  /**
   * The rule that lets this write through, if any. A method-override middleware behind the guard
   * routes the request as the method the override names, so a rule must allow every method the
   * request could become, not only the one on the request line: `POST .../-/compare` with
   * `X-HTTP-Method-Override: PUT` is a PUT to whatever route answers PUT there.
   */
  function allowedBy(request: Pending): AllowRule | null {
    const { req, method, pathname } = request;
    if (pathname === null) return null;
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
      log.conditionFailed(error);
      return null;
    }
  }

  const checks = createChecks({ config, memo, log, inflight, registration });
  const guard = namespaceReadOnlyMiddleware as NamespaceReadOnlyMiddleware;
  Object.defineProperties(guard, {
    store: { value: config.store, enumerable: true },
    isReadOnly: { value: checks.isReadOnly },
    assertWritable: { value: checks.assertWritable },
    runWrite: { value: checks.runWrite },
    close: {
      value: async () => {
        await registration?.release();
        if (config.ownsStore) await config.store.close?.();
      },
    },
  });
  return guard;
}
