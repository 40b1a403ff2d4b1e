import type { IncomingMessage } from 'node:http';
import { isLogger, isSilent, type Logger, LogLimiter } from '../logger.js';
import { requestIdOf } from '../request/request-id.js';
import type { Verdict } from './verdict.js';

/**
 * What the guard says about its verdicts, at a level that says who must act:
 *   - `warn`, what an operator must see, rate-limited to one line per kind per interval: the
 *     reasons that refuse every write at once (the store failing, the lease lapsed) and a target
 *     the configuration makes unknowable (an unmeasurable mount, a `resolveId` result that is no
 *     path). Unrecognised state values are the store's to report, once per value, not the
 *     guard's per request.
 *   - `info`, one line per refused request that is expected (a namespace in maintenance, frozen,
 *     an unrecognised value, a target a client made unknowable: a scanner can send many), a
 *     bypassed write and a write a `report` state would refuse;
 *   - `debug`, an allowlisted write.
 * A request that carries a logger (pino-http's `req.log`) gets its own lines there, with its
 * id; otherwise they go to the guard's logger, with the request id when the request has one.
 * Checks are questions, so only their store failures are logged.
 */

const BLOCKED = 'namespace-read-only: write blocked';
/** Reasons that refuse every write at once while they last. */
const WHOLESALE = new Set(['store-unavailable', 'lease-lapsed']);
/** Unknowable targets that the configuration, not the client, causes: every such write is. */
const MISCONFIGURED = new Set(['mount', 'resolveId result']);
const MAX_LOGGED_PATH = 512;

export interface RequestContext {
  readonly method: string;
  readonly pathname: string | null;
  /** The request, for its own logger (`req.log`) and its id. */
  readonly req?: IncomingMessage;
}

type RequestLevel = 'info' | 'debug';

export class VerdictLog {
  readonly #logger: Logger;
  readonly #troubles: LogLimiter;
  /** `logger: false`: not even a request's own logger hears from the guard. */
  readonly #silent: boolean;

  constructor(logger: Logger) {
    this.#logger = logger;
    this.#troubles = new LogLimiter(logger);
    this.#silent = isSilent(logger);
  }

  request(v: Verdict, request: RequestContext): void {
    if (v.admit && v.via === 'open') return;
    const method = request.method;
    const path = shortPath(request.pathname);
    const req = request.req;
    if (v.admit && v.via === 'allowlist') {
      const { rule, block } = v;
      this.#say(
        'debug',
        req,
        { method, path, rule: `${String(rule.method)} ${rule.path}`, namespace: block.namespace },
        'namespace-read-only: allowlisted write',
      );
    } else if (v.admit && v.via === 'store-error-open') {
      this.#storeErrorOpen(v.error, { method, path });
    } else if (v.admit) {
      // Bypassed or reported: the write happens, and the operator needs to know who wrote
      // through a maintenance, or what a real one would have refused. Never the token itself.
      const { block } = v;
      this.#say(
        'info',
        req,
        {
          namespace: block.namespace,
          method,
          path,
          reason: block.reason,
          ...(block.state?.reason !== undefined && { stateReason: block.state.reason }),
        },
        v.via === 'bypass'
          ? 'namespace-read-only: write bypassed maintenance'
          : 'namespace-read-only: write would be refused (report)',
      );
    } else {
      const { block } = v;
      const fields = {
        namespace: block.namespace,
        method,
        path,
        reason: block.reason,
        ...(block.detail !== undefined && { detail: block.detail }),
        ...(block.state?.unrecognized !== undefined && { value: block.state.unrecognized }),
        ...(block.state?.reason !== undefined && { stateReason: block.state.reason }),
      };
      if (WHOLESALE.has(block.reason)) {
        this.#troubles.warn(block.reason, withId(fields, req), BLOCKED);
      } else if (block.detail !== undefined && MISCONFIGURED.has(block.detail)) {
        this.#troubles.warn(`${block.reason}:${block.detail}`, withId(fields, req), BLOCKED);
      } else {
        this.#say('info', req, fields, BLOCKED);
      }
    }
  }

  check(v: Verdict, namespace: string): void {
    if (v.admit && v.via === 'store-error-open') this.#storeErrorOpen(v.error, { namespace });
    else if (!v.admit && WHOLESALE.has(v.block.reason)) {
      this.#troubles.warn(
        v.block.reason,
        { namespace, reason: v.block.reason, detail: v.block.detail },
        'namespace-read-only: check refused',
      );
    }
  }

  /** Deciding itself failed (a bug, or a user callback that threw); the write is refused. */
  failed(error: unknown): void {
    this.#logger.error({ err: error }, 'namespace-read-only: guard failed; write refused');
  }

  /**
   * A user callback that answers a question threw or rejected: the allowlist's `when`, `skip`,
   * `canBypass` (each then means "no") or a `writeRoutes` condition (which then means "writes").
   */
  conditionFailed(error: unknown, option = 'allowlist'): void {
    this.#troubles.error(
      `condition:${option}`,
      { err: error, option },
      option === 'allowlist'
        ? 'namespace-read-only: allowlist condition threw; treated as not allowed'
        : `namespace-read-only: ${option} threw; treated as the safe answer`,
    );
  }

  /**
   * A line about one request: to the request's own logger when it carries one (pino-http's
   * `req.log`; a throw from it is swallowed), else to the guard's; with the request's id.
   */
  #say(level: RequestLevel, req: IncomingMessage | undefined, fields: object, message: string) {
    if (this.#silent) return;
    const line = withId(fields, req);
    const own = requestLogger(req);
    if (own === undefined) {
      this.#logger[level](line, message);
      return;
    }
    try {
      own[level](line, message);
    } catch {
      // a log line is never worth a different answer
    }
  }

  #storeErrorOpen(error: unknown, fields: object): void {
    this.#troubles.error(
      'store-error-open',
      { err: error, ...fields },
      'namespace-read-only: state unreadable; write allowed (onStoreError: open)',
    );
  }
}

/**
 * `fields` with `reqId`, when the request has an id. Like `requestLogger`, it reads properties
 * of the request that other code set, and never lets a throw (a getter's) change the answer.
 */
function withId(fields: object, req: IncomingMessage | undefined): object {
  try {
    const reqId = requestIdOf(req);
    return reqId === undefined ? fields : { ...fields, reqId };
  } catch {
    return fields;
  }
}

/** The request's own logger (pino-http's `req.log`), if it carries one. */
function requestLogger(req: IncomingMessage | undefined): Logger | undefined {
  try {
    const log = (req as { log?: unknown } | undefined)?.log;
    return isLogger(log) ? log : undefined;
  } catch {
    return undefined;
  }
}

function shortPath(pathname: string | null): string | null {
  if (pathname === null || pathname.length <= MAX_LOGGED_PATH) return pathname;
  return `${pathname.slice(0, MAX_LOGGED_PATH)}…`;
}
