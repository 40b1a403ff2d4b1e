import type { InflightWrites } from '../fence/inflight.js';
import type { Block, Verdict } from '../guard/verdict.js';
import type { Config } from '../options.js';
import { GuardMetrics } from './metrics.js';
import { type SpanAnnotator, spanAnnotator } from './tracing.js';

/**
 * What the guard tells the outside about its decisions, besides its log: Prometheus metrics
 * (the `metrics` option) and OpenTelemetry span attributes (when `@opentelemetry/api` is
 * installed). A guard with neither has no observer at all, so the request path pays one
 * `null` check.
 */
export class Observer {
  private constructor(
    private readonly metrics: GuardMetrics | null,
    private readonly spans: SpanAnnotator | null,
  ) {}

  /**
   * `null` when nothing observes. `inflight`: the guard's writes in flight, when it takes part in
   * the migration fence.
   */
  static create(config: Config, inflight: InflightWrites | null): Observer | null {
    const metrics =
      config.metrics === null ? null : new GuardMetrics(config.metrics, config.store, inflight);
    const spans = spanAnnotator();
    return metrics === null && spans === null ? null : new Observer(metrics, spans);
  }

  /** A write let through without a verdict, because nothing at all is in maintenance. */
  admitted(): void {
    this.metrics?.admitted();
  }

  decided(v: Verdict): void {
    this.metrics?.decided(v);
    if (this.spans === null) return;
    if (!v.admit) this.spans('refused', v.block);
    else if (v.via === 'bypass') this.spans('bypassed', v.block);
  }

  /** Deciding failed, and the request was refused for `block` (`internal-error`). */
  failed(block: Block): void {
    this.metrics?.failed();
    this.spans?.('refused', block);
  }

  /** A state could not be read (`resolving`: `resolveId` failed). */
  storeError(error: unknown, resolving = false): void {
    this.metrics?.storeError(error, resolving);
  }

  /** The guard is closing: its store and writes in flight leave the gauges. */
  close(): void {
    this.metrics?.detach();
  }
}
