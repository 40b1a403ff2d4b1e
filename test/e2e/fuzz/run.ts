import fc from 'fast-check';
import { type RawResponse, sendRaw } from './client.js';
import {
  anyRequest,
  type RequestSpec,
  renderRequest,
  renderTarget,
  showBytes,
} from './generators.js';
import { openedBy } from './tokens.js';
import type { Flavor, Handled, Victims } from './victim.js';
import { refusalStatus, stateOf } from './world.js';

/**
 * The differential properties, for every request:
 *   safety     a write handler runs for namespace N (under every case-folded reading the victim
 *              records) only if N is writable or reporting, or the request carries a valid token
 *              for N; and, while the instance is in maintenance, only with a valid token for `*`;
 *              unless the route is one that legitimately runs in maintenance (git fetch, LFS
 *              batch, compare, sign-in, internal API...). A token for M opens nothing but M.
 *   refusals   a refusal names what refused it: a namespace in maintenance or frozen, `*` while
 *              the instance is in maintenance, or `?` (a target the guard cannot tell); never a
 *              reporting or writable namespace, and no handler runs. A plain read (GET, HEAD,
 *              OPTIONS, TRACE, no override, no query, no route `writeRoutes` names) is refused
 *              only by a frozen namespace: never for `?`, `*` or a namespace in maintenance.
 *              Whatever is refused because of a frozen namespace must not be sent by the router
 *              (asked of the same app without the guard) to another namespace.
 *   signal     an admitted response that names a namespace's state names the state it has, and,
 *              when the handler acts on namespaces, one of them.
 *   outcomes   a well-formed request has the outcome the states and its token decide
 *              (`expectedOutcome`): writes to writable and reporting namespaces, reads outside
 *              frozen ones, allowlisted requests and writes with the right token reach their
 *              handlers; the rest are refused, naming the namespace (or `*`) that refused them.
 * "Write" is judged from the victim's side: a non-read method, a method override naming a write
 * (as the victim's own override middleware reads it), a push discovery, or the export route (a
 * GET that writes, which Express also runs for HEAD). A request Node refuses (400) runs no
 * handler, which satisfies the properties.
 */

const TIMEOUT_MS = 10_000;
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);
const REFUSAL_STATUSES = new Set([403, 423, 503]);

/** The key the guard's refusal names (`X-Namespace-Read-Only`), or `null` if it is no refusal. */
export function refusalOf(response: RawResponse): string | null {
  const key = response.headers['x-namespace-read-only'];
  if (response.status === null || !REFUSAL_STATUSES.has(response.status)) return null;
  return key ?? null;
}

/**
 * A read no layer can take for a write: a read method, no override header, no query at all, and
 * nothing in its path that could name a route `writeRoutes` lists (`export`, in any spelling).
 */
export function plainRead(spec: RequestSpec): boolean {
  const target = renderTarget(spec);
  return (
    READ_METHODS.has(spec.method) &&
    spec.headers.every(([name]) => !OVERRIDE_HEADERS.has(name.trim().toLowerCase())) &&
    !target.includes('?') &&
    !/export/i.test(decodeFully(target))
  );
}

function decodeFully(text: string): string {
  let current = text;
  for (let i = 0; i < 4; i++) {
    const next = current.replace(/%([0-9a-f]{2})/gi, (_, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    );
    if (next === current) break;
    current = next;
  }
  return current.normalize('NFKC');
}

/** Whether `key`'s state refuses writes in this request's world. */
function closesWrites(key: string, spec: RequestSpec): boolean {
  if (key === '*') return spec.instance === 'maintenance';
  const state = stateOf(key);
  return state === 'maintenance' || state === 'frozen';
}

/** What is wrong with this outcome, or `null`. */
export function judge(
  spec: RequestSpec,
  response: RawResponse,
  handled: readonly Handled[],
): string | null {
  if (response.timedOut) return `no answer within ${TIMEOUT_MS} ms`;
  const opened = openedBy(spec.bypass);
  const tokens =
    opened.size === 0 ? 'no valid token' : `valid tokens for ${[...opened].join(', ')}`;
  for (const h of handled) {
    if (!h.write || h.allowlisted) continue;
    const closed = h.namespaces.filter((ns) => closesWrites(ns, spec) && !opened.has(ns));
    if (closed.length > 0) {
      return `write handler "${h.route}" (${h.method} as ${h.effective}) ran for namespace ${closed.join(', ')} (${closed.map(stateOf).join(', ')}), with ${tokens}`;
    }
    if (closesWrites('*', spec) && !opened.has('*')) {
      return `write handler "${h.route}" (${h.method} as ${h.effective}) ran while the instance is in maintenance, with ${tokens}`;
    }
  }
  if (response.status === 500) return 'the app answered 500 (a handler or the guard threw)';

  const refused = refusalOf(response);
  if (refused !== null) {
    const problem = judgeRefusal(spec, response, handled, refused);
    if (problem !== null) return problem;
  } else if (response.status === 200) {
    const problem = judgeSignal(spec, response, handled);
    if (problem !== null) return problem;
  }

  const expected = spec.expect;
  if (expected === null) return null;
  const what = `well-formed request "${spec.template}" to "${expected.namespace}" (instance ${spec.instance}, ${tokens})`;
  if (expected.outcome === 'pass') {
    if (refused !== null) return `${what} was refused, naming "${refused}"`;
    const reached = handled.some(
      (h) =>
        (h.write || !expected.write) &&
        (expected.namespace === '*' || h.namespaces.includes(expected.namespace)),
    );
    if (!reached) return `${what} reached no handler for it (status ${response.status})`;
    return null;
  }
  if (refused !== expected.namespace) {
    return `${what} must be refused naming "${expected.namespace}", but was ${refused === null ? `answered ${response.status}` : `refused naming "${refused}"`}`;
  }
  return null;
}

function judgeRefusal(
  spec: RequestSpec,
  response: RawResponse,
  handled: readonly Handled[],
  refused: string,
): string | null {
  if (handled.length > 0) return `refused naming "${refused}", yet a handler ran`;
  if (refused !== '?' && refused !== '*') {
    const state = stateOf(refused);
    if (state !== 'maintenance' && state !== 'frozen') {
      return `refused naming namespace "${refused}", whose state (${state ?? 'none'}) refuses nothing`;
    }
  }
  if (refused === '*' && spec.instance !== 'maintenance') {
    return `refused naming the instance, whose state (${spec.instance}) refuses nothing`;
  }
  const status = refusalStatus(refused);
  if (response.status !== status) {
    return `refused naming "${refused}" with status ${response.status}, not ${status}`;
  }
  if (plainRead(spec) && (refused === '?' || refused === '*' || stateOf(refused) !== 'frozen')) {
    return `a plain ${spec.method} was refused naming "${refused}": only a frozen namespace refuses reads`;
  }
  return null;
}

function judgeSignal(
  spec: RequestSpec,
  response: RawResponse,
  handled: readonly Handled[],
): string | null {
  const key = response.headers['x-namespace-read-only'];
  if (key === undefined) return null;
  const state = response.headers['x-namespace-read-only-state'];
  const actual = key === '*' ? (spec.instance === 'none' ? null : spec.instance) : stateOf(key);
  if (state !== actual) {
    return `admitted response signals "${key}" in state "${state}", but its state is ${actual ?? 'none'}`;
  }
  // Only where a handler acts on namespaces: one for an instance route (`/groups\x#` reaches the
  // reserved `groups` catch-all, not the group scope the guard reads) may carry any signal.
  const acting = handled.filter((h) => h.namespaces.length > 0);
  if (key !== '*' && acting.length > 0 && !acting.some((h) => h.namespaces.includes(key))) {
    return `admitted response signals namespace "${key}", but the handlers that ran act on ${acting.flatMap((h) => h.namespaces).join(', ')}`;
  }
  return null;
}

let sequence = 0;

/** Sends one request to the victim of its deployment and world and judges the outcome; throws on failure. */
export async function exercise(victims: Victims, flavor: Flavor, spec: RequestSpec): Promise<void> {
  const id = `${++sequence}`;
  const bytes = renderRequest(spec, id);
  const response = await sendRaw(
    victims.port(flavor, spec.deployment, spec.instance),
    bytes,
    TIMEOUT_MS,
  );
  // A handler that ran without our id header (an HTTP/0.9 line drops the headers) files under ''.
  const handled = [...victims.recorder.take(id), ...victims.recorder.take('')];
  let problem = judge(spec, response, handled);
  let shadow: readonly Handled[] | null = null;
  const refused = refusalOf(response);
  if (problem === null && refused !== null && stateOf(refused) === 'frozen') {
    // A frozen namespace refused it: the router, unguarded, must send it to that namespace.
    const shadowId = `s${id}`;
    await sendRaw(
      victims.port(flavor, spec.deployment, 'unguarded'),
      renderRequest(spec, shadowId),
      TIMEOUT_MS,
    );
    shadow = [...victims.recorder.take(shadowId), ...victims.recorder.take('')];
    // Judged where the router sends it to a namespace: a path the guard reads as the frozen
    // namespace's that reaches an instance route instead (`/groups\ice#`, whose `\` becomes `/`
    // for the router but not for its `/groups` mount) is refused for a namespace it may be.
    const acting = shadow.filter((h) => h.namespaces.length > 0);
    if (acting.length > 0 && !acting.some((h) => h.namespaces.includes(refused))) {
      problem = `refused because namespace "${refused}" is frozen, but the router sends it to ${acting.flatMap((h) => h.namespaces).join(', ')}`;
    }
  }
  if (problem === null) return;
  throw new Error(
    [
      `${flavor}, deployment "${spec.deployment}", instance ${spec.instance}: ${problem}`,
      'request sent:',
      showBytes(bytes),
      `status: ${response.status ?? 'connection closed without a response'}`,
      `guard header: ${response.headers['x-namespace-read-only'] ?? '(none)'}`,
      `handlers run: ${JSON.stringify(handled, null, 2)}`,
      ...(shadow === null
        ? []
        : [`handlers run without the guard: ${JSON.stringify(shadow, null, 2)}`]),
    ].join('\n'),
  );
}

export interface FuzzSettings {
  readonly runs: number;
  readonly seed: number;
  /** The command that replays this run (printed on failure). */
  readonly replay?: string;
}

/** Reads `FUZZ_RUNS` and `FUZZ_SEED` (set by `npm run fuzz -- --runs N --seed S`). */
export function fuzzSettings(defaults: FuzzSettings): FuzzSettings {
  const runs = Number(process.env.FUZZ_RUNS ?? defaults.runs);
  const seed = Number(process.env.FUZZ_SEED ?? defaults.seed);
  if (!Number.isSafeInteger(runs) || runs < 1)
    throw new Error(`FUZZ_RUNS: not a count: ${process.env.FUZZ_RUNS}`);
  if (!Number.isSafeInteger(seed))
    throw new Error(`FUZZ_SEED: not an integer: ${process.env.FUZZ_SEED}`);
  return { runs, seed };
}

/**
 * Runs the property `runs` times against one Express major. On failure fast-check shrinks the
 * request and the thrown error carries the seed, the shrink path and the shrunk request's bytes.
 */
export async function fuzz(
  victims: Victims,
  flavor: Flavor,
  settings: FuzzSettings,
): Promise<void> {
  const property = fc.asyncProperty(anyRequest, (spec) => exercise(victims, flavor, spec));
  const details = await fc.check(property, { numRuns: settings.runs, seed: settings.seed });
  if (!details.failed) return;
  const shrunk = details.counterexample?.[0];
  const lines = [
    `namespace-read-only fuzz FAILED on ${flavor} after ${details.numRuns} requests`,
    `replay: ${settings.replay ?? `FUZZ_RUNS=${settings.runs} FUZZ_SEED=${details.seed} npx vitest run test/e2e/fuzz.test.ts`}` +
      ` (seed ${details.seed}, fast-check path "${details.counterexamplePath}", shrunk ${details.numShrinks} times)`,
    `shrunk request spec: ${JSON.stringify(shrunk)}`,
    details.errorInstance instanceof Error
      ? details.errorInstance.message
      : String(details.errorInstance),
  ];
  throw new Error(lines.join('\n'));
}
