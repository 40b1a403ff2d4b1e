import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { OptionsError } from '../errors.js';
import {
  type AnswerConfig,
  blockMessage,
  jsonBody,
  retryAfterSeconds,
  statusOf,
} from './answer.js';
import type { Pipeline } from './pipeline.js';
import type { Block } from './verdict.js';
import type { VerdictLog } from './verdict-log.js';

/**
 * `guard.upgrade(req, socket, options)`: the guard for an HTTP upgrade (a WebSocket handshake).
 * Node hands an upgrade to `server.on('upgrade')`, never to Express, so the middleware does not
 * see it; and a handshake is a GET, which the guard admits. The application says which upgrades
 * write; the pipeline decides them as writes to their path, with the same resolution and verdict
 * as any HTTP write; a refusal is answered on the raw socket, as `ws` answers a handshake it
 * rejects, and the socket is closed.
 */

export interface UpgradeOptions {
  /**
   * Does this upgrade write? `true`, or a function of the request answering `true` or `false`;
   * anything else it answers, or a throw, counts as `true`. Default `false`: the upgrade is
   * decided as the GET it is, which only a frozen namespace refuses.
   */
  readonly write?: boolean | ((req: IncomingMessage) => boolean);
}

/**
 * Resolves `true` when the upgrade may go on (call `wss.handleUpgrade` then), `false` when it
 * was refused (the socket is answered and closed) or the socket closed meanwhile. Never rejects.
 */
export type UpgradeCheck = (
  req: IncomingMessage,
  socket: Duplex,
  options?: UpgradeOptions,
) => Promise<boolean>;

export function upgradeCheck(
  pipeline: Pipeline,
  config: AnswerConfig,
  log: VerdictLog,
): UpgradeCheck {
  return function namespaceReadOnlyUpgrade(req, socket, options) {
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const done = (block: Block | null): void => {
        // The pipeline answers once; this only makes sure the socket is never answered twice.
        if (settled) return;
        settled = true;
        if (block === null) return resolve(!socket.destroyed);
        try {
          refuseOnSocket(socket, block, config);
        } catch {
          socket.destroy();
        }
        resolve(false);
      };
      try {
        pipeline.upgrade(req, writes(req, options, log), done);
      } catch (error) {
        // The pipeline never throws; this is the last line between a bug and the 'upgrade' event.
        log.failed(error);
        done({ reason: 'internal-error', namespace: null });
      }
    });
  };
}

/** `options.write` for this request: `false` only when it says so. */
function writes(
  req: IncomingMessage,
  options: UpgradeOptions | undefined,
  log: VerdictLog,
): boolean {
  const write: unknown = options?.write;
  if (write === undefined || typeof write === 'boolean') return write === true;
  if (typeof write !== 'function') {
    // A per-call option cannot throw into the 'upgrade' event: said once per interval, and the
    // upgrade is judged the safe way.
    log.conditionFailed(
      new OptionsError('write', 'a boolean or a function of the request', write, 'upgrade option'),
      'upgrade write',
    );
    return true;
  }
  try {
    return (write as (req: IncomingMessage) => unknown)(req) !== false;
  } catch (error) {
    log.conditionFailed(error, 'upgrade write');
    return true;
  }
}

/**
 * The HTTP answer's status, headers and JSON body, written on the socket before the handshake
 * is answered, then the socket closed: the client sees an ordinary HTTP response (`ws` emits
 * 'unexpected-response' with it). A custom `handler` is not called: it answers on a response,
 * and an upgrade has none.
 */
function refuseOnSocket(socket: Duplex, block: Block, config: AnswerConfig): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const status = statusOf(block, config);
  const retryAfter = status === 503 ? retryAfterSeconds(block.state, config.retryAfter) : undefined;
  const body = jsonBody(block, blockMessage(block, config));
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Connection: close',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    // Names reach this header only after validation (printable ASCII); `?` when unknown.
    `X-Namespace-Read-Only: ${block.namespace ?? '?'}`,
  ];
  if (retryAfter !== undefined) head.push(`Retry-After: ${retryAfter}`);
  // A client that hangs up before reading the answer must not become an unhandled 'error'.
  socket.on('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}
