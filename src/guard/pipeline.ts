import { type IncomingMessage, ServerResponse } from 'node:http';
import { bypassTokenOf } from '../bypass/request.js';
import { type BypassGrant, verifyBypassToken } from '../bypass/token.js';
import type { InflightWrites } from '../fence/inflight.js';
import type { Observer } from '../observe/observer.js';
import type { Config } from '../options.js';
import {
  hasWriteOverrideHeader,
  hasWriteOverrideQuery,
  isReadMethod,
  overrideMethods,
  wireMethod,
} from '../request/method.js';
import { rootNamespace } from '../request/namespace-name.js';
import {
  hasDotSegment,
  mountRemainders,
  parseTarget,
  routerPathname,
  stripPrefix,
} from '../request/path.js';
import type { AllowRule } from '../routing/allowlist.js';
import type { IdKind, NamespaceRoutes } from '../routing/target.js';
import type { MaybePromise, Memo, RequestMemo } from '../state/request-memo.js';
import { INSTANCE, type NamespaceState } from '../state/values.js';
import type { StateStore, WriterRegistration } from '../stores/store.js';
import { withTimeout } from '../timeout.js';
import { sendBlocked } from './answer.js';
import { signalStates } from './signal.js';
import { type Block, type Unknowable, type VerdictInput, verdict } from './verdict.js';
import type { VerdictLog } from './verdict-log.js';

/**
 * The request path, top to bottom, as wiring around the verdict:
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

/**
 * One write being decided. It is also the verdict's input, filled in as the pipeline learns the
 * target and the states, and the request's memo when it has none yet: one object per write, not
 * one more per decision.
 *
 * Every field is assigned in the constructor, in one order, and the class extends nothing: class
 * field definitions, a `super()` call and a private field made this object ~40 ns dearer per
 * write (bench/micro.mjs), on the path every write takes while anything is in maintenance.
 */
class Pending implements VerdictInput<Pending>, Memo {
  declare k0: string | undefined;
  declare v0: MaybePromise<NamespaceState | null> | undefined;
  declare k1: string | undefined;
  declare v1: MaybePromise<NamespaceState | null> | undefined;
  declare rest: Map<string, MaybePromise<NamespaceState | null>> | null;
  declare namespace: string | null;
  declare unknowable: Unknowable | undefined;
  declare nothingClosed: boolean;
  declare own: NamespaceState | null;
  declare instance: NamespaceState | null;
  declare readError: unknown;
  declare holdsLease: boolean;
  /** `now`'s value once read; 0 before. */
  declare time: number;
  /** Itself while its route can be identified; `null` when no allowlist rule may apply. */
  declare route: Pending | null;
  /** An upgrade's answer to a refusal; `null` for a request, which is answered on its response. */
  declare refuse: ((block: Block) => void) | null;
  /** Set by the pipeline when the guard takes bypasses: may this request write to a namespace? */
  declare bypass: ((namespace: string) => boolean) | null;
  /** Namespaces `canBypass` granted; `null` until it has been asked. */
  declare granted: Set<string> | null;
  /** The bypass token's grant, once verified (`null`: none or invalid). */
  declare grant: BypassGrant | null | undefined;
  declare readonly req: IncomingMessage;
  declare readonly res: ServerResponse;
  declare readonly next: NextFunction;
  declare readonly method: string;
  /** The path the application routes (mount and `relativeUrlRoot` removed), `null` if none. */
  declare readonly pathname: string | null;
  declare readonly failOpen: boolean;
  declare readonly allowedBy: (request: Pending) => AllowRule | null;
  /** Only reads: a frozen state is the only one that refuses it. */
  declare readonly read: boolean;

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
    method: string,
    pathname: string | null,
    failOpen: boolean,
    allowedBy: (request: Pending) => AllowRule | null,
    read: boolean,
  ) {
    this.k0 = undefined;
    this.v0 = undefined;
    this.k1 = undefined;
    this.v1 = undefined;
    this.rest = null;
    this.req = req;
    this.res = res;
    this.next = next;
    this.method = method;
    this.pathname = pathname;
    this.failOpen = failOpen;
    this.allowedBy = allowedBy;
    this.read = read;
    this.route = pathname === null ? null : this;
    this.namespace = null;
    this.unknowable = undefined;
    this.nothingClosed = false;
    this.own = null;
    this.instance = null;
    this.readError = undefined;
    this.holdsLease = true;
    this.time = 0;
    this.refuse = null;
    this.bypass = null;
    this.granted = null;
    this.grant = undefined;
  }

  /** The decision's time, read once and only when needed (a `startsAt`, a bypass token's expiry). */
  get now(): number {
    if (this.time === 0) this.time = Date.now();
    return this.time;
  }
}

const UNPARSABLE: Unknowable = { reason: 'invalid-namespace', detail: 'unparsable-target' };
const DOT_SEGMENT: Unknowable = { reason: 'invalid-namespace', detail: 'dot-segment' };
/** A sub-app mount the path cannot be measured against (an array, a pattern): no grammar applies. */
const UNMOUNTABLE: Unknowable = { reason: 'invalid-namespace', detail: 'mount' };
const NO_RESOLVER: Unknowable = { reason: 'unresolvable-id', detail: 'no resolveId option' };
const BAD_RESOLVED: Unknowable = { reason: 'invalid-namespace', detail: 'resolveId result' };

export interface PipelineParts {
  readonly config: Config;
  readonly memo: RequestMemo;
  readonly log: VerdictLog;
  /** Writes this guard admitted, for the migration fence. */
  readonly inflight: InflightWrites;
  /** `null` unless the store runs the migration fence. */
  readonly registration: WriterRegistration | null;
  /** Metrics and span attributes; `null` when nothing observes the guard. */
  readonly observer: Observer | null;
}

export class Pipeline {
  private readonly config: Config;
  private readonly routes: NamespaceRoutes;
  private readonly memo: RequestMemo;
  private readonly store: StateStore;
  private readonly log: VerdictLog;
  private readonly inflight: InflightWrites;
  private readonly registration: WriterRegistration | null;
  private readonly observer: Observer | null;
  /** Bound once, not per request: the verdict calls it only for a write it would refuse. */
  readonly #allowedBy = (request: Pending) => this.allowedBy(request);
  readonly #takesBypass: boolean;

  constructor(parts: PipelineParts) {
    this.config = parts.config;
    this.routes = parts.config.routes;
    this.memo = parts.memo;
    this.store = parts.config.store;
    this.log = parts.log;
    this.inflight = parts.inflight;
    this.registration = parts.registration;
    this.observer = parts.observer;
    this.#takesBypass = parts.config.bypass !== undefined || parts.config.canBypass !== undefined;
  }

  /** The middleware's body: never throws, never returns a promise. */
  handle(req: IncomingMessage, res: ServerResponse, next: NextFunction): void {
    try {
      if (this.config.skip !== undefined && this.skipped(req)) return next();
      const method = wireMethod(req);
      const read = isReadMethod(method) && !this.readStartsWrite(req, method);
      if (this.admitsUnparsed(read, this.config.signal)) return next();
      return this.target(req, res, next, method, read, null);
    } catch (error) {
      this.failed(this.pending(req, res, next, wireMethod(req), null), error);
    }
  }

  /**
   * An upgrade (a WebSocket handshake, say), which never passes through Express: decided as the
   * HTTP request it is, or as a write whatever its method when `write` says so. `done` gets
   * `null` when it may go on, the block when it is refused: there is no response to answer on,
   * so its caller answers on the socket. Never throws.
   */
  upgrade(req: IncomingMessage, write: boolean, done: (block: Block | null) => void): void {
    // What the pipeline's types want of a request; only `signal`'s headers land on it, unsent.
    const res = new ServerResponse(req);
    const next = () => done(null);
    try {
      if (this.config.skip !== undefined && this.skipped(req)) return next();
      const method = wireMethod(req);
      const read = !write && isReadMethod(method) && !this.readStartsWrite(req, method);
      // No `signal`: an upgrade has no response to carry its headers.
      if (this.admitsUnparsed(read, false)) return next();
      this.target(req, res, next, method, read, done);
    } catch (error) {
      const request = this.pending(req, res, next, wireMethod(req), null);
      request.refuse = done;
      this.failed(request, error);
    }
  }

  /**
   * Whether the verdict is known to admit the request without its target being parsed. Nothing
   * is in maintenance (no state at all but `active`) and no fence needs a write's namespace for
   * its count: every request is admitted, whatever its target. Or a read that nothing can refuse
   * at once: a read is decided only from what the store answers at once, so it never waits, and
   * only a frozen state refuses one, or `signal` marks it.
   */
  private admitsUnparsed(read: boolean, signal: boolean): boolean {
    const known = this.anyClosed();
    if (known === false && (read || this.registration === null)) {
      if (!read) this.observer?.admitted();
      return true;
    }
    return read && (known !== true || (!signal && this.store.anyFrozen?.() === false));
  }

  /** Steps 2 to 5 for a request that may be refused: resolve its target, then decide. */
  private target(
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
    method: string,
    read: boolean,
    refuse: ((block: Block) => void) | null,
  ): void {
    const raw = routerPathname(req);
    const pathname = this.appPathname(req, raw);
    const request = this.pending(req, res, next, method, pathname, read);
    if (refuse !== null) request.refuse = refuse;
    if (raw !== null && hasDotSegment(raw)) {
      // The router leaves dot segments alone, but a proxy, a framework or a handler joining
      // paths may resolve them, and then neither the namespace nor the route is the one the
      // router saw: refused, and not even the allowlist applies.
      return this.cannotTell(request, DOT_SEGMENT, false);
    }
    if (raw === null) return this.cannotTell(request, UNPARSABLE);
    if (pathname === null) return this.cannotTell(request, UNMOUNTABLE);
    const target = this.routes.resolve(pathname);
    switch (target.type) {
      case 'none':
        return this.lookUp(request, null);
      case 'namespace':
        return this.lookUp(request, target.namespace);
      case 'invalid':
        return this.cannotTell(request, { reason: 'invalid-namespace', detail: target.reason });
      case 'id':
        return this.resolveNumericId(request, target.kind, target.id);
    }
  }

  /** The path the application routes: the router's, less a sub-app mount and `relativeUrlRoot`. */
  private appPathname(req: IncomingMessage, raw: string | null): string | null {
    return raw === null ? null : stripPrefix(req, raw, this.config.relativeUrlRoot);
  }

  /** `skip(req)`; one that throws exempts nothing. */
  private skipped(req: IncomingMessage): boolean {
    try {
      return this.config.skip?.(req) === true;
    } catch (error) {
      this.log.conditionFailed(error, 'skip');
      return false;
    }
  }

  /**
   * A GET that opens a push, a read carrying a method override that names a write, or a read
   * the `writeRoutes` option says writes.
   */
  private readStartsWrite(req: IncomingMessage, method: string): boolean {
    if (hasWriteOverrideHeader(req.headers)) return true;
    if (this.config.writeRoutes !== null && this.writesByRoute(req, method)) return true;
    const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '';
    if (url.indexOf('?') === -1) return false;
    const parsed = parseTarget(req);
    const search = typeof parsed?.query === 'string' ? parsed.query : null;
    if (search === null) return false;
    if (hasWriteOverrideQuery(search)) return true;
    const routes = this.routes;
    if (routes.startsWrite === undefined || typeof parsed?.pathname !== 'string') return false;
    const pathname = stripPrefix(req, parsed.pathname, this.config.relativeUrlRoot);
    if (pathname !== null) return routes.startsWrite(pathname, search);
    // The mount prefix is unknowable: a read that starts a write after any prefix it could be
    // goes on as a write, and `handle` refuses it (UNMOUNTABLE); other reads pass.
    return mountRemainders(parsed.pathname).some((p) => routes.startsWrite?.(p, search) === true);
  }

  /**
   * Whether a `writeRoutes` rule names a route this read may reach: under the method on the
   * request line, the one it is routed as (Express runs a GET route for a HEAD), and every
   * method an override before or behind the guard could route it as.
   */
  private writesByRoute(req: IncomingMessage, method: string): boolean {
    const pathname = this.appPathname(req, routerPathname(req));
    if (pathname === null) return false;
    const matches = this.config.writeRoutes;
    if (matches === null) return false;
    try {
      const parsed = parseTarget(req);
      const search = typeof parsed?.query === 'string' ? parsed.query : null;
      const methods = new Set([
        method,
        req.method ?? method,
        ...overrideMethods(req.headers, search),
      ]);
      if (methods.has('HEAD')) methods.add('GET');
      for (const m of methods) if (matches(req, m, pathname) !== null) return true;
      return false;
    } catch (error) {
      // A rule that cannot say counts as "writes": the safe reading of a read.
      this.log.conditionFailed(error, 'writeRoutes');
      return true;
    }
  }

  private resolveNumericId(request: Pending, kind: IdKind, id: string): void {
    const { resolveId } = this.config;
    // A read does not wait for a lookup; only the instance state (answered at once) applies.
    if (request.read) return this.lookUp(request, null);
    if (resolveId === undefined) {
      return this.cannotTell(request, NO_RESOLVER);
    }
    // A lookup that fails is a store failure: `onStoreError` decides.
    let resolved: MaybePromise<string | null | undefined>;
    try {
      resolved = resolveId(kind, id);
    } catch (error) {
      return this.lookupFailed(request, null, error ?? 'resolveId threw', true);
    }
    if (!(resolved instanceof Promise)) return this.withFullPath(request, resolved);
    withTimeout(resolved, this.config.timeout)
      .then(
        (fullPath) => this.withFullPath(request, fullPath),
        (error: unknown) => this.lookupFailed(request, null, error ?? 'resolveId rejected', true),
      )
      .catch((error: unknown) => this.failed(request, error));
  }

  private withFullPath(request: Pending, fullPath: string | null | undefined): void {
    // No such project or group: the application will answer 404, but the instance state
    // still applies to the write.
    if (fullPath === null || fullPath === undefined) return this.lookUp(request, null);
    const root = typeof fullPath === 'string' ? rootNamespace(fullPath) : null;
    if (root === null || !root.ok) return this.cannotTell(request, BAD_RESOLVED);
    this.lookUp(request, root.value);
  }

  /** Reads the states the write depends on, then decides: synchronously when both are cached. */
  private lookUp(request: Pending, namespace: string | null): void {
    if (request.read) {
      const own = namespace === null ? null : this.memo.peek(namespace, request.req);
      const instance = this.memo.peek(INSTANCE, request.req);
      // Not answerable at once: a read does not wait, and passes.
      if (own === undefined || instance === undefined) return request.next();
      return this.decideOn(request, namespace, own, instance);
    }
    const memo = this.memo.of(request.req, request);
    const own = namespace === null ? null : this.memo.readIn(memo, namespace);
    const instance = this.memo.readIn(memo, INSTANCE);
    if (!(own instanceof Promise) && !(instance instanceof Promise)) {
      return this.decideOn(request, namespace, own, instance);
    }
    // Counted in flight while it is being decided: one of its two reads may already hold the old,
    // open state, so a fence that finds the namespace closed before the other read returns must
    // still wait for this write (it is admitted, and counted again, before this count ends).
    const deciding = this.registration === null ? null : this.inflight.enter(namespace);
    Promise.all([own, instance])
      .then(
        ([o, i]) => this.decideOn(request, namespace, o, i),
        (error: unknown) => this.lookupFailed(request, namespace, error ?? 'store rejected'),
      )
      .catch((error: unknown) => this.failed(request, error))
      .finally(() => deciding?.());
  }

  /**
   * The target cannot be trusted: refused without reading its state, unless the store knows
   * that nothing at all is in maintenance. A store still learning its states is waited for,
   * within the read budget; one that cannot know counts as "something may be".
   */
  private cannotTell(request: Pending, unknowable: Unknowable, routable = true): void {
    request.unknowable = unknowable;
    if (!routable) request.route = null;
    const known = this.anyClosed();
    if (!(known instanceof Promise)) {
      request.nothingClosed = known === false;
      return this.decide(request);
    }
    withTimeout(known, this.config.timeout)
      .then(
        (closed) => {
          request.nothingClosed = closed === false;
        },
        () => undefined,
      )
      .then(() => this.decide(request))
      .catch((error: unknown) => this.failed(request, error));
  }

  /** A state (or, `resolving`, `resolveId`) could not be read: `onStoreError` decides. */
  private lookupFailed(
    request: Pending,
    namespace: string | null,
    error: unknown,
    resolving = false,
  ): void {
    this.observer?.storeError(error, resolving);
    request.namespace = namespace;
    request.readError = error;
    this.decide(request);
  }

  private decideOn(
    request: Pending,
    namespace: string | null,
    own: NamespaceState | null,
    instance: NamespaceState | null,
  ): void {
    request.namespace = namespace;
    request.own = own;
    request.instance = instance;
    this.decide(request);
  }

  /** The store's `anyClosed()`, whose promise, if it returns one, can never reject unhandled. */
  private anyClosed(): boolean | Promise<boolean | undefined> | undefined {
    const known = this.store.anyClosed?.();
    return known instanceof Promise ? known.catch(() => undefined) : known;
  }

  /** Asks the verdict, logs it, and carries it out. */
  private decide(request: Pending): void {
    request.holdsLease = this.registration === null || this.registration.holdsLease();
    const v = verdict(request);
    if (!v.admit && request.granted === null && this.mayAskCanBypass(v.block)) {
      return this.askCanBypass(request, v.block.namespace as string);
    }
    this.log.request(v, request);
    this.observer?.decided(v);
    if (!v.admit) {
      if (request.refuse !== null) return request.refuse(v.block);
      return sendBlocked(
        request.req,
        request.res,
        request.next,
        request.pathname,
        v.block,
        this.config,
      );
    }
    if (this.config.signal)
      signalStates(request.res, request.own, request.instance, request.namespace, request.now);
    // Allowlisted writes are not counted: they write nothing the fence protects. Nor is an
    // upgrade: its connection may stay open for hours, and no fence could wait for it to end.
    if (
      this.registration !== null &&
      !request.read &&
      v.via !== 'allowlist' &&
      request.refuse === null
    ) {
      this.inflight.admit(request.namespace, request.res);
    }
    request.next();
  }

  /** Only a state can be bypassed, never a target the guard cannot tell or a store failure. */
  private mayAskCanBypass(block: Block): boolean {
    return (
      this.config.canBypass !== undefined && block.state !== undefined && block.namespace !== null
    );
  }

  /** Asks the `canBypass` hook once per request, then decides again with its answer. */
  private askCanBypass(request: Pending, namespace: string): void {
    const granted = new Set<string>();
    request.granted = granted;
    const record = (yes: unknown) => {
      if (yes === true) granted.add(namespace);
    };
    let answer: boolean | Promise<boolean> | undefined;
    try {
      answer = this.config.canBypass?.(request.req, namespace);
    } catch (error) {
      this.log.conditionFailed(error, 'canBypass');
    }
    if (!(answer instanceof Promise)) {
      record(answer);
      return this.decide(request);
    }
    withTimeout(answer, this.config.timeout)
      .then(record, (error: unknown) => this.log.conditionFailed(error, 'canBypass'))
      .then(() => this.decide(request))
      .catch((error: unknown) => this.failed(request, error));
  }

  /** The verdict's `bypass`: a valid token for `namespace`, or `canBypass` granted it. */
  private bypasses(request: Pending, namespace: string): boolean {
    if (request.granted?.has(namespace) === true) return true;
    const keys = this.config.bypass;
    if (keys === undefined) return false;
    if (request.grant === undefined) {
      const token = bypassTokenOf(request.req);
      request.grant = token === null ? null : verifyBypassToken(token, keys, request.now);
    }
    return request.grant !== null && request.grant.namespace === namespace;
  }

  private pending(
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
    method: string,
    pathname: string | null,
    read = false,
  ): Pending {
    const request = new Pending(
      req,
      res,
      next,
      method,
      pathname,
      this.config.failOpen,
      this.#allowedBy,
      read,
    );
    if (this.#takesBypass) request.bypass = (namespace) => this.bypasses(request, namespace);
    return request;
  }

  /** Deciding threw (a bug, or a user callback that threw): refuse the write, never throw. */
  private failed(request: Pending, error: unknown): void {
    try {
      this.log.failed(error);
      const block = { reason: 'internal-error', namespace: null } as const;
      this.observer?.failed(block);
      if (request.refuse !== null) return request.refuse(block);
      sendBlocked(request.req, request.res, request.next, request.pathname, block, this.config);
    } catch {
      request.res.destroy();
    }
  }

  /**
   * The rule that lets this write through, if any. A method-override middleware behind the guard
   * routes the request as the method the override names, and one before it already has
   * (`req.method`), so a rule must allow every method the request could be routed as, not only
   * the one on the request line: `POST .../-/compare` with `X-HTTP-Method-Override: PUT` is a PUT
   * to whatever route answers PUT there.
   */
  private allowedBy(request: Pending): AllowRule | null {
    const { req, method, pathname } = request;
    if (pathname === null) return null;
    // A backslash is a `/` to the parser that reads the whole target (when it contains `#`), but not
    // to a mounted router, which cuts its prefix from the raw text: the two route the request
    // differently, so no route can be identified. No client sends one.
    const target = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '';
    if (target.indexOf('\\') !== -1) return null;
    try {
      const rule = this.config.allowedBy(req, method, pathname);
      if (rule === null) return null;
      const parsed = parseTarget(req);
      const search = typeof parsed?.query === 'string' ? parsed.query : null;
      const routedAs = req.method ?? method;
      if (routedAs !== method && this.config.allowedBy(req, routedAs, pathname) === null) {
        return null;
      }
      for (const other of overrideMethods(req.headers, search)) {
        if (other !== method && this.config.allowedBy(req, other, pathname) === null) return null;
      }
      return rule;
    } catch (error) {
      this.log.conditionFailed(error);
      return null;
    }
  }
}
