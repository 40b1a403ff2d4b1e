import type { InflightWrites } from '../fence/inflight.js';
import type { Block, Verdict } from '../guard/verdict.js';
import type { Config } from '../options.js';
import { GuardMetrics } from './metrics.js';

/**
 * What the guard tells the outside about its decisions, besides its log: Prometheus metrics
 * (the `metrics` option). A guard without them has no observer at all, so the request path pays
 * one `null` check.
 */
export class Observer {
  private constructor(private readonly metrics: GuardMetrics | null) {}

  /**
   * `null` when nothing observes. `inflight`: the guard's writes in flight, when it takes part in
   * the migration fence.
   */
  static create(config: Config, inflight: InflightWrites | null): Observer | null {
    const metrics =
      config.metrics === null ? null : new GuardMetrics(config.metrics, config.store, inflight);
    return metrics === null ? null : new Observer(metrics);
  }

  /** A write let through without a verdict, because nothing at all is in maintenance. */
  admitted(): void {
    this.metrics?.admitted();
  }

  decided(v: Verdict): void {
    this.metrics?.decided(v);
  }

  /** Deciding failed, and the request was refused for `block` (`internal-error`). */
  failed(_block: Block): void {
    this.metrics?.failed();
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
