import type { IncomingMessage } from 'node:http';

/**
 * The request's id, for the log: `req.id` as pino-http (and express-request-id) set it, else the
 * `X-Request-Id` header. A client may send any header, so a string is cut at 128 characters and
 * its control characters (C0, DEL, C1, the Unicode line separators) are written as `\uXXXX`: an
 * id must not be able to forge a line in a text log.
 */

const MAX_REQUEST_ID = 128;

export function requestIdOf(req: IncomingMessage | undefined): string | number | undefined {
  if (req === undefined) return undefined;
  const id = (req as { id?: unknown }).id;
  if (typeof id === 'number') return Number.isFinite(id) ? id : undefined;
  if (typeof id === 'string' && id.length > 0) return printable(id);
  let header = req.headers?.['x-request-id'];
  if (Array.isArray(header)) header = header[0];
  return typeof header === 'string' && header.length > 0 ? printable(header) : undefined;
}

function printable(raw: string): string {
  const id = raw.length > MAX_REQUEST_ID ? `${raw.slice(0, MAX_REQUEST_ID)}…` : raw;
  let out = '';
  let from = 0;
  for (let i = 0; i < id.length; i++) {
    const code = id.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029) {
      out += `${id.slice(from, i)}\\u${code.toString(16).padStart(4, '0')}`;
      from = i + 1;
    }
  }
  return from === 0 ? id : out + id.slice(from);
}
