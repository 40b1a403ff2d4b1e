import type { IncomingMessage, ServerResponse } from 'node:http';
import { NamespaceNameError } from '../errors.js';
import { parseTarget } from '../request/path.js';
import type { Checks } from './checks.js';

/**
 * `guard.statusHandler`: the namespace's status as JSON, for a UI that shows a banner before
 * its users meet a refusal. It answers; it never calls `next`, never throws.
 */
export function statusHandler(checks: Checks): (req: IncomingMessage, res: ServerResponse) => void {
  return function namespaceStatus(req, res) {
    const namespace = namespaceOf(req);
    if (namespace === null) {
      send(res, 400, { message: 'name a namespace: /:namespace or ?namespace=' });
      return;
    }
    checks.status(namespace, req).then(
      (status) => send(res, 200, status),
      (error: unknown) =>
        error instanceof NamespaceNameError
          ? send(res, 400, { message: 'not a namespace name' })
          : send(res, 503, { message: 'the state could not be read' }),
    );
  };
}

function namespaceOf(req: IncomingMessage): string | null {
  const param = (req as { params?: { namespace?: unknown } }).params?.namespace;
  if (typeof param === 'string' && param.length > 0) return param;
  try {
    const query = parseTarget(req)?.query;
    const value = typeof query === 'string' ? new URLSearchParams(query).get('namespace') : null;
    return value !== null && value.length > 0 ? value : null;
  } catch {
    return null;
  }
}

function send(res: ServerResponse, status: number, body: object): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
