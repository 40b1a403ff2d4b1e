import type { Counter, Gauge } from 'prom-client';
import { OptionsError, type RefusalReason, StoreTimeoutError } from '../errors.js';
import type { InflightWrites } from '../fence/inflight.js';
import type { Verdict } from '../guard/verdict.js';
import { suggest } from '../options.js';
import type { StateStore, StoreObservation } from '../stores/store.js';
import { loadOptional } from './optional.js';

/**
 * The guard's Prometheus metrics (option `metrics: { registry, prefix }`), with prom-client, an
 * optional peer loaded only when this option is given (see optional.ts).
 *
 * The request path only adds 1 to a number in an array slot computed from the verdict (no label
 * lookup, no allocation: prom-client's own `labels(...).inc()` hashes its labels on every call,
 * even on a child bound once); prom-client reads the numbers when the registry is scraped,
 * through each metric's `collect()`. The gauges ask the store, also only when scraped.
 *
 * Every label is bounded: outcomes and reasons are fixed sets, store error kinds too, and a
 * refusal is labelled with its namespace only when a state of that namespace refused it, so
 * the namespaces labelled are those in maintenance, never whatever traffic names.
 */

/** The `metrics` option. */
export interface MetricsOptions {
  /** The prom-client registry to register the metrics in (`new Registry()`, or `register`). */
  readonly registry: MetricsRegistry;
  /** Prepended to every metric name. Default `'nsro_'`. */
  readonly prefix?: string;
}

/** What the guard uses of a prom-client `Registry` (any prom-client 15 registry has it). */
export interface MetricsRegistry {
  registerMetric(metric: never): void;
  getSingleMetric(name: string): unknown;
}

export interface MetricsConfig {
  readonly registry: MetricsRegistry;
  readonly prefix: string;
}

const METRICS_OPTION_NAMES: Record<keyof MetricsOptions, true> = { registry: true, prefix: true };
const PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

/** Checks the `metrics` option's shape; prom-client itself is loaded when the guard is built. */
export function metricsOption(value: unknown): MetricsConfig | null {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OptionsError('metrics', 'an object { registry, prefix? }', value);
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!Object.hasOwn(METRICS_OPTION_NAMES, key)) {
      const hint = suggest(key, Object.keys(METRICS_OPTION_NAMES));
      throw new OptionsError(
        `metrics.${key}`,
        `absent (the metrics options are \`registry\` and \`prefix\`${hint ? `; did you mean \`${hint}\`?` : ''})`,
        o[key],
      );
    }
  }
  const registry = o.registry as Partial<Record<string, unknown>> | null | undefined;
  if (
    typeof registry !== 'object' ||
    registry === null ||
    typeof registry.registerMetric !== 'function' ||
    typeof registry.getSingleMetric !== 'function'
  ) {
    throw new OptionsError(
      'metrics.registry',
      "a prom-client Registry (`new Registry()`, or prom-client's `register`)",
      o.registry,
    );
  }
  const prefix = o.prefix ?? 'nsro_';
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new OptionsError(
      'metrics.prefix',
      'a metric name prefix (letters, digits, `_` and `:`, not starting with a digit)',
      o.prefix,
    );
  }
  return { registry: registry as unknown as MetricsRegistry, prefix };
}

// --- what is counted -----------------------------------------------------------------------

const OUTCOMES = ['admitted', 'refused', 'allowlisted', 'bypassed', 'reported'] as const;
type Outcome = (typeof OUTCOMES)[number];
type Reason = RefusalReason | 'none';

/** Every reason once; the compiler checks that none is missing. */
const REASON_INDEX: Readonly<Record<Reason, number>> = {
  none: 0,
  maintenance: 1,
  'instance-maintenance': 2,
  frozen: 3,
  'unrecognized-state': 4,
  'store-unavailable': 5,
  'lease-lapsed': 6,
  'invalid-namespace': 7,
  'unresolvable-id': 8,
  'internal-error': 9,
};
const REASONS = Object.keys(REASON_INDEX).sort(
  (a, b) => REASON_INDEX[a as Reason] - REASON_INDEX[b as Reason],
) as Reason[];
const R = REASONS.length;
const slot = (outcome: Outcome, reason: Reason) =>
  OUTCOMES.indexOf(outcome) * R + REASON_INDEX[reason];

const ADMITTED = slot('admitted', 'none');
const ADMITTED_UNCHECKED = slot('admitted', 'store-unavailable');
const REFUSED = OUTCOMES.indexOf('refused') * R;
const ALLOWLISTED = OUTCOMES.indexOf('allowlisted') * R;
const BYPASSED = OUTCOMES.indexOf('bypassed') * R;
const REPORTED = OUTCOMES.indexOf('reported') * R;
const INTERNAL_ERROR = slot('refused', 'internal-error');

const STATE_REASONS: readonly Reason[] = [
  'maintenance',
  'instance-maintenance',
  'frozen',
  'unrecognized-state',
];
/**
 * The series exported from the start, at 0, so that a rate sees their first increase: every
 * combination the verdict can produce. Another one still appears once counted.
 */
const INITIAL: readonly (readonly [Outcome, readonly Reason[]])[] = [
  ['admitted', ['none', 'store-unavailable']],
  ['refused', REASONS.filter((r) => r !== 'none')],
  ['allowlisted', REASONS.filter((r) => r !== 'none' && r !== 'internal-error')],
  ['bypassed', STATE_REASONS],
  ['reported', ['maintenance', 'instance-maintenance']],
];

/** The store failures the guard itself sees, always exported. */
const GUARD_ERROR_KINDS = ['read', 'timeout', 'resolve-id'] as const;
export type GuardErrorKind = (typeof GUARD_ERROR_KINDS)[number];

/** The label of a refusal no state made (a store failure, a target it cannot tell, a lapsed lease). */
export const NO_NAMESPACE = '-';

const NAMES = {
  decisions: 'decisions_total',
  refused: 'refused_total',
  inMaintenance: 'namespaces_in_maintenance',
  stateAge: 'state_age_seconds',
  pushUp: 'push_up',
  storeErrors: 'store_errors_total',
  inflight: 'inflight_writes',
} as const;

interface PromClient {
  Counter: typeof Counter;
  Gauge: typeof Gauge;
}

function promClient(): PromClient {
  const client = loadOptional<PromClient>('prom-client');
  if (client === null || typeof client.Counter !== 'function') {
    throw new OptionsError(
      'metrics',
      'given with prom-client installed (an optional peer dependency: npm install prom-client)',
      'prom-client not found',
    );
  }
  return client;
}

/**
 * The metrics of one registry and prefix, shared by every guard that names them (two guards
 * cannot register the same names twice): their decisions add up, and the gauges cover every
 * store and fence they use.
 */
class RegistryMetrics {
  /** Decisions per outcome × reason: the request path's only work. */
  readonly decisions = new Float64Array(OUTCOMES.length * R);
  /** Refusals per namespace whose state refused them, and `-`. */
  readonly refused = new Map<string, number>([[NO_NAMESPACE, 0]]);
  readonly guardErrors = new Float64Array(GUARD_ERROR_KINDS.length);
  /** The stores in use, with how many guards use each. */
  readonly #stores = new Map<StateStore, number>();
  /** Error counts of stores no guard uses any more: a counter never goes down. */
  readonly #retiredErrors = new Map<string, number>();
  readonly #inflight = new Set<InflightWrites>();
  #inflightGauge: Gauge | null = null;

  constructor(
    private readonly client: PromClient,
    private readonly registry: MetricsRegistry,
    private readonly prefix: string,
  ) {
    const taken = Object.values(NAMES)
      .map((name) => prefix + name)
      .find((name) => registry.getSingleMetric(name) !== undefined);
    if (taken !== undefined) {
      throw new OptionsError(
        'metrics.prefix',
        `a prefix whose metric names \`metrics.registry\` does not hold yet (it holds ${taken})`,
        prefix,
      );
    }
    const { Counter, Gauge } = client;
    const registers = [registry as never];
    const decisions: Counter = new Counter({
      name: prefix + NAMES.decisions,
      help: 'Requests the guard decided, by outcome and by the refusal reason that applied (none: admitted with nothing in the way). Writes always; reads only where a frozen state or signal applies.',
      labelNames: ['outcome', 'reason'],
      registers,
      collect: () => this.#collectDecisions(decisions),
    });
    const refused: Counter = new Counter({
      name: prefix + NAMES.refused,
      help: 'Refused requests, by the namespace whose state refused them (* the instance); "-" when no state did (store failure, unknowable target, lapsed lease). Only namespaces in maintenance are labelled.',
      labelNames: ['namespace'],
      registers,
      collect: () => this.#collectRefused(refused),
    });
    const inMaintenance: Gauge = new Gauge({
      name: prefix + NAMES.inMaintenance,
      help: 'Namespaces (and the instance, *) whose state is not active, as this process knows them; NaN when it cannot know (Redis store not in the complete mode).',
      registers,
      collect: () => inMaintenance.set(this.#inMaintenance()),
    });
    const stateAge: Gauge = new Gauge({
      name: prefix + NAMES.stateAge,
      help: "How old this process's knowledge of the states is, in seconds (Redis store: since push last proved itself; memory store: 0); NaN when unknown.",
      registers,
      collect: () => stateAge.set(this.#stateAge()),
    });
    const pushUp: Gauge = new Gauge({
      name: prefix + NAMES.pushUp,
      help: 'Whether every state change reaches this process as it is made: 1 while the Redis store is complete (its push path proven) or the store is in memory, else 0.',
      registers,
      collect: () => pushUp.set(this.#pushUp()),
    });
    const storeErrors: Counter = new Counter({
      name: prefix + NAMES.storeErrors,
      help: 'Store failures: states the guard could not read (read, timeout, resolve-id), and the Redis store own failed operations (redis-*).',
      labelNames: ['kind'],
      registers,
      collect: () => this.#collectStoreErrors(storeErrors),
    });
  }

  /** A guard starts using these metrics; returns what it calls when it closes. */
  attach(store: StateStore, inflight: InflightWrites | null): () => void {
    this.#stores.set(store, (this.#stores.get(store) ?? 0) + 1);
    if (inflight !== null) {
      this.#inflight.add(inflight);
      this.#inflightGauge ??= this.#registerInflight();
    }
    let attached = true;
    return () => {
      if (!attached) return;
      attached = false;
      if (inflight !== null) this.#inflight.delete(inflight);
      const users = (this.#stores.get(store) ?? 1) - 1;
      if (users > 0) {
        this.#stores.set(store, users);
        return;
      }
      this.#stores.delete(store);
      for (const [kind, n] of Object.entries(observe(store)?.errors ?? {})) {
        this.#retiredErrors.set(kind, (this.#retiredErrors.get(kind) ?? 0) + n);
      }
    };
  }

  refusedBy(label: string): void {
    this.refused.set(label, (this.refused.get(label) ?? 0) + 1);
  }

  #registerInflight(): Gauge {
    const name = this.prefix + NAMES.inflight;
    if (this.registry.getSingleMetric(name) !== undefined) {
      throw new OptionsError(
        'metrics.prefix',
        `a prefix whose metric names \`metrics.registry\` does not hold yet (it holds ${name})`,
        this.prefix,
      );
    }
    const gauge: Gauge = new this.client.Gauge({
      name,
      help: 'Writes admitted by the guards that take part in the migration fence (fence: true) and not finished yet.',
      registers: [this.registry as never],
      collect: () => {
        let total = 0;
        for (const inflight of this.#inflight) total += inflight.count('*');
        gauge.set(total);
      },
    });
    return gauge;
  }

  #collectDecisions(counter: Counter): void {
    counter.reset();
    const counts = this.decisions;
    const exported = new Set<number>();
    for (const [outcome, reasons] of INITIAL) {
      for (const reason of reasons) {
        const i = slot(outcome, reason);
        exported.add(i);
        counter.inc({ outcome, reason }, counts[i] ?? 0);
      }
    }
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i] ?? 0;
      if (n > 0 && !exported.has(i)) {
        const outcome = OUTCOMES[Math.floor(i / R)] as Outcome;
        counter.inc({ outcome, reason: REASONS[i % R] as Reason }, n);
      }
    }
  }

  /**
   * Exports every namespace counted, then forgets those back in the default state: their last
   * count was exported once, and no refusal counts them again while they stay open.
   */
  #collectRefused(counter: Counter): void {
    counter.reset();
    for (const [namespace, n] of this.refused) counter.inc({ namespace }, n);
    for (const namespace of this.refused.keys()) {
      if (namespace !== NO_NAMESPACE && this.#backToDefault(namespace)) {
        this.refused.delete(namespace);
      }
    }
  }

  /** Every store in use knows for certain that `namespace` is in its default state. */
  #backToDefault(namespace: string): boolean {
    if (this.#stores.size === 0) return false;
    for (const store of this.#stores.keys()) {
      let state: ReturnType<NonNullable<StateStore['peek']>>;
      try {
        state = store.peek?.(namespace);
      } catch {
        return false;
      }
      if (state === undefined || (state !== null && state.state !== 'active')) return false;
    }
    return true;
  }

  #collectStoreErrors(counter: Counter): void {
    counter.reset();
    const totals = new Map<string, number>();
    GUARD_ERROR_KINDS.forEach((kind, i) => {
      totals.set(kind, this.guardErrors[i] ?? 0);
    });
    const add = (kind: string, n: number) => totals.set(kind, (totals.get(kind) ?? 0) + n);
    for (const [kind, n] of this.#retiredErrors) add(kind, n);
    for (const store of this.#stores.keys()) {
      for (const [kind, n] of Object.entries(observe(store)?.errors ?? {})) add(kind, n);
    }
    for (const [kind, n] of totals) counter.inc({ kind }, n);
  }

  #observations(): (StoreObservation | undefined)[] {
    return [...this.#stores.keys()].map(observe);
  }

  #inMaintenance(): number {
    const all = this.#observations();
    let total = all.length === 0 ? Number.NaN : 0;
    for (const o of all) total += o?.inMaintenance ?? Number.NaN;
    return total;
  }

  #stateAge(): number {
    const all = this.#observations();
    let oldest = all.length === 0 ? Number.NaN : 0;
    for (const o of all) oldest = Math.max(oldest, o?.knowledgeAge ?? Number.NaN);
    return oldest / 1000;
  }

  #pushUp(): number {
    const all = this.#observations();
    if (all.length === 0 || all.some((o) => o === undefined)) return Number.NaN;
    return all.every((o) => o?.live === true) ? 1 : 0;
  }
}

/** The store's observation; `undefined` when it offers none, or fails to. */
function observe(store: StateStore): StoreObservation | undefined {
  try {
    return store.observe?.();
  } catch {
    return undefined;
  }
}

/** `counts[i] += 1`: `i` is always a slot of `counts` (the compiler cannot know it). */
function bump(counts: Float64Array, i: number): void {
  counts[i] = (counts[i] as number) + 1;
}

const shared = new WeakMap<MetricsRegistry, Map<string, RegistryMetrics>>();

/** One guard's view of its registry's metrics: what the request path counts. */
export class GuardMetrics {
  readonly #metrics: RegistryMetrics;
  readonly #decisions: Float64Array;
  readonly detach: () => void;

  /** Loads prom-client and registers the metrics (once per registry and prefix). */
  constructor(config: MetricsConfig, store: StateStore, inflight: InflightWrites | null) {
    let byPrefix = shared.get(config.registry);
    if (byPrefix === undefined) {
      byPrefix = new Map();
      shared.set(config.registry, byPrefix);
    }
    let metrics = byPrefix.get(config.prefix);
    if (metrics === undefined) {
      metrics = new RegistryMetrics(promClient(), config.registry, config.prefix);
      byPrefix.set(config.prefix, metrics);
    }
    this.#metrics = metrics;
    this.#decisions = metrics.decisions;
    this.detach = metrics.attach(store, inflight);
  }

  /** A write let through without a verdict: nothing at all is in maintenance. */
  admitted(): void {
    bump(this.#decisions, ADMITTED);
  }

  decided(v: Verdict): void {
    const counts = this.#decisions;
    if (v.admit) {
      switch (v.via) {
        case 'open':
          bump(counts, ADMITTED);
          return;
        case 'store-error-open':
          bump(counts, ADMITTED_UNCHECKED);
          return;
        case 'allowlist':
          bump(counts, ALLOWLISTED + REASON_INDEX[v.block.reason]);
          return;
        case 'bypass':
          bump(counts, BYPASSED + REASON_INDEX[v.block.reason]);
          return;
        case 'report':
          bump(counts, REPORTED + REASON_INDEX[v.block.reason]);
          return;
      }
    }
    const { block } = v;
    bump(counts, REFUSED + REASON_INDEX[block.reason]);
    // Its namespace only when its state refused it: bounded by what is in maintenance.
    this.#metrics.refusedBy(
      block.state !== undefined && block.namespace !== null ? block.namespace : NO_NAMESPACE,
    );
  }

  /** Deciding failed: refused as `internal-error`. */
  failed(): void {
    bump(this.#decisions, INTERNAL_ERROR);
    this.#metrics.refusedBy(NO_NAMESPACE);
  }

  /** A state (or `resolveId`'s answer) could not be read. */
  storeError(error: unknown, resolving: boolean): void {
    const kind: GuardErrorKind = resolving
      ? 'resolve-id'
      : error instanceof StoreTimeoutError
        ? 'timeout'
        : 'read';
    bump(this.#metrics.guardErrors, GUARD_ERROR_KINDS.indexOf(kind));
  }
}
