import fc from 'fast-check';
import { type RawResponse, sendRaw } from './client.js';
import { anyRequest, type RequestSpec, renderRequest, showBytes } from './generators.js';
import type { Flavor, Handled, Victims } from './victim.js';
import { MAINTENANCE } from './world.js';

/**
 * The differential property, for every request:
 *   safety   a write handler runs for namespace N only if N (under every case-folded reading
 *            the victim records) is writable, unless the route is one that legitimately runs in
 *            maintenance (git fetch, LFS batch, compare, sign-in, internal API...);
 *   liveness a well-formed write to a writable namespace, and a well-formed allowlisted request
 *            (git fetch, LFS batch, compare) to any namespace, reaches its handler, never a 503.
 * "Write" is judged from the victim's side: a non-read method, a method override naming a write
 * (as the victim's own override middleware reads it), or a push discovery. A request Node
 * refuses (400) runs no handler, which satisfies the property.
 */

const IN_MAINTENANCE = new Set(MAINTENANCE);
const TIMEOUT_MS = 10_000;

/** What is wrong with this outcome, or `null`. */
export function judge(
  spec: RequestSpec,
  response: RawResponse,
  handled: readonly Handled[],
): string | null {
  if (response.timedOut) return `no answer within ${TIMEOUT_MS} ms`;
  for (const h of handled) {
    if (!h.write || h.allowlisted) continue;
    const closed = h.namespaces.filter((ns) => IN_MAINTENANCE.has(ns));
    if (closed.length > 0) {
      return `write handler "${h.route}" (${h.method} as ${h.effective}) ran for namespace ${closed.join(', ')}, which is in maintenance`;
    }
  }
  if (response.status === 500) return 'the app answered 500 (a handler or the guard threw)';
  if (spec.mustPass !== null) {
    if (response.status === 503)
      return `well-formed request "${spec.template}" to namespace "${spec.mustPass}" was blocked`;
    const reached = handled.some((h) => h.write && h.namespaces.includes(spec.mustPass as string));
    if (!reached) {
      return `well-formed request "${spec.template}" to "${spec.mustPass}" reached no handler for it (status ${response.status})`;
    }
  }
  return null;
}

let sequence = 0;

/** Sends one request to the victim of its deployment and judges the outcome; throws on failure. */
export async function exercise(victims: Victims, flavor: Flavor, spec: RequestSpec): Promise<void> {
  const id = `${++sequence}`;
  const bytes = renderRequest(spec, id);
  const response = await sendRaw(victims.port(flavor, spec.deployment), bytes, TIMEOUT_MS);
  // A handler that ran without our id header (an HTTP/0.9 line drops the headers) files under ''.
  const handled = [...victims.recorder.take(id), ...victims.recorder.take('')];
  const problem = judge(spec, response, handled);
  if (problem === null) return;
  throw new Error(
    [
      `${flavor}, deployment "${spec.deployment}": ${problem}`,
      'request sent:',
      showBytes(bytes),
      `status: ${response.status ?? 'connection closed without a response'}`,
      `handlers run: ${JSON.stringify(handled, null, 2)}`,
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
    `replay: ${settings.replay ?? `FUZZ_RUNS=${settings.runs} FUZZ_SEED=${details.seed} npx vitest run test/fuzz.test.ts`}` +
      ` (seed ${details.seed}, fast-check path "${details.counterexamplePath}", shrunk ${details.numShrinks} times)`,
    `shrunk request spec: ${JSON.stringify(shrunk)}`,
    details.errorInstance instanceof Error
      ? details.errorInstance.message
      : String(details.errorInstance),
  ];
  throw new Error(lines.join('\n'));
}
