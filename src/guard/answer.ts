import type { IncomingMessage, ServerResponse } from 'node:http';
import { NamespaceReadOnlyError, REFUSAL_CODES } from '../errors.js';
import type { NamespaceReadOnlyOptions } from '../options.js';
import { INSTANCE, type NamespaceState } from '../state/values.js';
import type { NextFunction } from './pipeline.js';
import { expose } from './signal.js';
import type { Block } from './verdict.js';

/**
 * The blocked answer: 503, `Retry-After`, `Cache-Control: no-store`, `X-Namespace-Read-Only`,
 * and a body in the form the client reads (JSON for APIs, a page for browsers, text for git and
 * the rest). It is written without reading the request body.
 */

export interface AnswerConfig {
  readonly retryAfter: number;
  readonly message: string | undefined;
  /** `statusFor`: a state's `reason` to the refusal's status (503 when absent). */
  readonly statusFor?: ReadonlyMap<string, number>;
  readonly signal?: boolean;
  readonly handler?: NamespaceReadOnlyOptions['handler'];
}

/** The refusal's status: what `statusFor` says for the state's reason, else 503. */
export function statusOf(block: Block, config: AnswerConfig): number {
  const reason = block.state?.reason;
  return (reason === undefined ? undefined : config.statusFor?.get(reason)) ?? 503;
}

const MAX_RETRY_AFTER = 365 * 24 * 3600;

export function retryAfterSeconds(
  state: NamespaceState | undefined,
  fallback: number,
  now = Date.now(),
): number {
  const end = state?.until ?? state?.expiresAt;
  if (end === undefined) return fallback;
  const seconds = Math.ceil((end.getTime() - now) / 1000);
  return seconds > 0 ? Math.min(seconds, MAX_RETRY_AFTER) : fallback;
}

export function blockMessage(block: Block, config: AnswerConfig): string {
  if (block.state?.message !== undefined) return block.state.message;
  switch (block.reason) {
    case 'frozen':
      return (
        config.message ??
        (block.namespace === INSTANCE
          ? 'This site is temporarily frozen for maintenance. Please try again later.'
          : 'This namespace is temporarily frozen for maintenance. Please try again later.')
      );
    case 'maintenance':
    case 'unrecognized-state':
      return (
        config.message ??
        'This namespace is temporarily in maintenance mode. Please try again later.'
      );
    case 'instance-maintenance':
      return config.message ?? 'This site is undergoing maintenance. Please try again later.';
    case 'invalid-namespace':
    case 'unresolvable-id':
      return 'The namespace this write targets could not be determined safely, so it was refused.';
    default:
      return 'The maintenance state could not be read, so this write was refused. Please try again later.';
  }
}

export function toError(block: Block, config: AnswerConfig): NamespaceReadOnlyError {
  const status = statusOf(block, config);
  return new NamespaceReadOnlyError(
    blockMessage(block, config),
    block.reason,
    block.namespace,
    status === 503 ? retryAfterSeconds(block.state, config.retryAfter) : undefined,
    { reason: block.state?.reason, status },
  );
}

export function sendBlocked(
  req: IncomingMessage,
  res: ServerResponse,
  next: NextFunction,
  pathname: string | null,
  block: Block,
  config: AnswerConfig,
): void {
  if (res.headersSent) {
    // Something answered already; the only thing left to guarantee is that nothing else runs.
    if (!res.writableEnded) res.end();
    return;
  }
  const message = blockMessage(block, config);
  const namespace = block.namespace;
  const status = statusOf(block, config);
  // "Try again later" only means something for a maintenance; archived is not coming back.
  const retryAfter = status === 503 ? retryAfterSeconds(block.state, config.retryAfter) : undefined;
  res.statusCode = status;
  if (retryAfter !== undefined) res.setHeader('Retry-After', String(retryAfter));
  res.setHeader('Cache-Control', 'no-store');
  // Names reach this header only after validation (printable ASCII); `?` when unknown.
  res.setHeader('X-Namespace-Read-Only', namespace ?? '?');
  if (config.signal === true) expose(res, 'X-Namespace-Read-Only');
  const { handler } = config;
  if (handler !== undefined) {
    const state = block.state;
    handler(req, res, next, {
      status,
      namespace,
      refusal: block.reason,
      code: REFUSAL_CODES[block.reason],
      reason: state?.reason,
      retryAfter,
      message,
      state,
    });
    return;
  }
  const format = responseFormat(req, pathname);
  let body: string;
  let type: string;
  if (format === 'json') {
    type = 'application/json; charset=utf-8';
    body = jsonBody(block, message);
  } else if (format === 'html') {
    type = 'text/html; charset=utf-8';
    body = htmlPage(message, namespace);
  } else {
    type = 'text/plain; charset=utf-8';
    body = `${message}\n`;
  }
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** The JSON answer's body (an upgrade's refusal, answered on its socket, has the same). */
export function jsonBody(block: Block, message: string): string {
  const until = block.state?.until;
  const reason = block.state?.reason;
  return JSON.stringify({
    message,
    namespace: block.namespace,
    code: REFUSAL_CODES[block.reason],
    ...(reason !== undefined && { reason }),
    ...(until !== undefined && { until: until.toISOString() }),
  });
}

type Format = 'json' | 'html' | 'text';

function responseFormat(req: IncomingMessage, pathname: string | null): Format {
  const contentType = req.headers['content-type'];
  if (typeof contentType === 'string' && contentType.toLowerCase().includes('json')) return 'json';
  const accept = req.headers.accept;
  const preferred = typeof accept === 'string' ? preferredOfAccept(accept) : null;
  if (preferred === 'json') return 'json';
  if (pathname !== null && isApiPath(pathname)) return 'json';
  return preferred === 'html' ? 'html' : 'text';
}

/** JSON or HTML, whichever the `Accept` header ranks higher; the earlier one wins a tie. */
function preferredOfAccept(accept: string): 'json' | 'html' | null {
  let best: 'json' | 'html' | null = null;
  let bestQ = 0;
  for (const part of accept.slice(0, 1000).split(',')) {
    const [range = '', ...params] = part.split(';');
    const type = range.trim().toLowerCase();
    const kind = type.includes('json')
      ? 'json'
      : type === 'text/html' || type === 'application/xhtml+xml'
        ? 'html'
        : null;
    if (kind === null) continue;
    let q = 1;
    for (const param of params) {
      const [name, value] = param.split('=');
      if (name?.trim() === 'q' && value !== undefined) q = Number.parseFloat(value) || 0;
    }
    if (q > bestQ) {
      best = kind;
      bestQ = q;
    }
  }
  return best;
}

function isApiPath(pathname: string): boolean {
  return (
    pathname.length >= 4 &&
    pathname.slice(0, 4).toLowerCase() === '/api' &&
    (pathname.length === 4 || pathname[4] === '/')
  );
}

function htmlPage(message: string, namespace: string | null): string {
  const who =
    namespace === INSTANCE || namespace === null
      ? 'This site'
      : `The namespace <strong>${escapeHtml(namespace)}</strong>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Maintenance</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.5em}</style>
</head>
<body>
<h1>${who} is temporarily read-only</h1>
<p>${escapeHtml(message)}</p>
</body>
</html>
`;
}

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}
