import net from 'node:net';

/**
 * Sends a request byte for byte over a fresh TCP connection, so nothing (no client library, no
 * URL class) normalises the target on the way, and reads the status line and headers back.
 */

export interface RawResponse {
  /** `null` when the server closed the connection without answering. */
  readonly status: number | null;
  /** Lower-cased header names; repeated headers keep the last value. */
  readonly headers: Readonly<Record<string, string>>;
  readonly timedOut: boolean;
}

export function sendRaw(port: number, bytes: Buffer, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket = net.connect({ port, host: '127.0.0.1' });
    const finish = (timedOut: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseHead(Buffer.concat(chunks).toString('latin1'), timedOut));
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
    socket.on('connect', () => socket.end(bytes));
  });
}

function parseHead(text: string, timedOut: boolean): RawResponse {
  const end = text.indexOf('\r\n\r\n');
  const lines = (end === -1 ? text : text.slice(0, end)).split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0)
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: status === null ? null : Number(status[1]), headers, timedOut };
}
