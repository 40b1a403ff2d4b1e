import type { ServerResponse } from 'node:http';
import { INSTANCE, inForce, type NamespaceState } from '../state/values.js';

/**
 * The `signal` option: an admitted response for a namespace whose state is not `active` says
 * so, so that a UI can show a banner before its users meet a refusal. The headers are exposed to
 * other origins (a browser app on another origin cannot read them otherwise).
 */

export const SIGNAL_HEADER = 'X-Namespace-Read-Only';
/** The state in force: `maintenance`, `frozen` or `report`. */
export const STATE_HEADER = 'X-Namespace-Read-Only-State';
/** A window not yet in force: `<namespace>; starts=<ISO time>`. */
export const SCHEDULED_HEADER = 'X-Namespace-Read-Only-Scheduled';

export function signalStates(
  res: ServerResponse,
  own: NamespaceState | null,
  instance: NamespaceState | null,
  namespace: string | null,
  now: number,
): void {
  if (res.headersSent) return;
  // The namespace's own state first: it is the more specific.
  for (let i = 0; i < 2; i++) {
    const key = i === 0 ? namespace : INSTANCE;
    const state = i === 0 ? own : instance;
    if (key === null || state === null || state.state === 'active') continue;
    if (inForce(state, now)) {
      res.setHeader(SIGNAL_HEADER, key);
      res.setHeader(STATE_HEADER, state.state);
      expose(res, `${SIGNAL_HEADER}, ${STATE_HEADER}`);
      return;
    }
    res.setHeader(SCHEDULED_HEADER, `${key}; starts=${state.startsAt?.toISOString()}`);
    expose(res, SCHEDULED_HEADER);
    return;
  }
}

/** Adds to `Access-Control-Expose-Headers`, keeping what another middleware put there. */
export function expose(res: ServerResponse, headers: string): void {
  const current = res.getHeader('Access-Control-Expose-Headers');
  const value = current === undefined ? '' : String(current);
  res.setHeader('Access-Control-Expose-Headers', value === '' ? headers : `${value}, ${headers}`);
}
