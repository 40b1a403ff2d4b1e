import type { IncomingMessage, ServerResponse } from 'node:http';
import { InflightWrites } from '../fence/inflight.js';
import { Observer } from '../observe/observer.js';
import { type NamespaceReadOnlyOptions, resolveOptions } from '../options.js';
import { RequestMemo } from '../state/request-memo.js';
import type { StateStore } from '../stores/store.js';
import { type Checks, createChecks } from './checks.js';
import { type NextFunction, Pipeline } from './pipeline.js';
import { statusHandler } from './status.js';
import { type UpgradeCheck, upgradeCheck } from './upgrade.js';
import { VerdictLog } from './verdict-log.js';

/**
 * `namespaceReadOnly(options)`: options checked once, then the parts the request path
 * (pipeline.ts) and the programmatic checks (checks.ts) share — one store, one per-request memo,
 * one log, one count of writes in flight — wired into an Express middleware.
 */

export type { NextFunction } from './pipeline.js';

export interface NamespaceReadOnlyMiddleware extends Checks {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  /** The store this guard reads. */
  readonly store: StateStore;
  /**
   * A JSON status handler for a UI's banner, mounted in one line
   * (`app.get('/-/read-only/:namespace', guard.statusHandler)`): answers `{ namespace, readOnly,
   * state, message, until, startsAt, reason }` for `req.params.namespace` or `?namespace=`.
   */
  readonly statusHandler: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * Decides an HTTP upgrade (a WebSocket handshake), which never reaches Express, in
   * `server.on('upgrade')`: `{ write: true }` (or a function of the request) judges it as a write
   * to its path. Resolves `true` when it may go on (`wss.handleUpgrade`); when refused, the
   * socket already has the blocked answer and is closed, and it resolves `false`. Never rejects.
   */
  readonly upgrade: UpgradeCheck;
  /**
   * Stops this guard's part in the migration fence. Closes the store only when the guard
   * created it (the default); a store you passed in is yours to close, as other guards may
   * share it.
   */
  close(): Promise<void>;
}

export function namespaceReadOnly<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
>(options?: NamespaceReadOnlyOptions<Req, Res>): NamespaceReadOnlyMiddleware {
  const config = resolveOptions(options);
  if (config.routes.numericIds === true && config.resolveId === undefined) {
    config.logger.warn(
      { setup: true, option: 'resolveId' },
      'namespace-read-only: the routes can name projects and groups by numeric id and no `resolveId` option was given; such writes are refused while any namespace is in maintenance',
    );
  }
  const memo = new RequestMemo(config.store, config.timeout);
  const log = new VerdictLog(config.logger);
  const inflight = new InflightWrites();
  const registration = config.fence ? (config.store.register?.(inflight) ?? null) : null;
  const observer = Observer.create(config, registration === null ? null : inflight);
  const parts = { config, memo, log, inflight, registration, observer };
  const pipeline = new Pipeline(parts);
  const checks = createChecks(parts);

  function namespaceReadOnlyMiddleware(
    req: IncomingMessage,
    res: ServerResponse,
    next: NextFunction,
  ): void {
    pipeline.handle(req, res, next);
  }

  return Object.defineProperties(namespaceReadOnlyMiddleware, {
    store: { value: config.store, enumerable: true },
    isReadOnly: { value: checks.isReadOnly },
    assertWritable: { value: checks.assertWritable },
    runWrite: { value: checks.runWrite },
    status: { value: checks.status },
    statusHandler: { value: statusHandler(checks), enumerable: true },
    upgrade: { value: upgradeCheck(pipeline, config, log), enumerable: true },
    close: {
      value: async () => {
        observer?.close();
        await registration?.release();
        if (config.ownsStore) await config.store.close?.();
      },
    },
  }) as NamespaceReadOnlyMiddleware;
}
