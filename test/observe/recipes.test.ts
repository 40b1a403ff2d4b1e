import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { beforeAll, describe, expect, it } from 'vitest';
import { MemoryStateStore, namespaceReadOnly } from '../../src/index.js';
import { ROOT } from '../helpers/dist.js';
import { parseYaml, type Yaml } from '../helpers/yaml.js';

/**
 * The observability recipes: the Prometheus alerting rules and the Grafana dashboard refer only
 * to metrics the guard exports, and no alert fires on the refusals a maintenance is for.
 * Checked with `promtool` as well (`npm test` takes it out of Debian's `prometheus` package).
 */

const ALERTS = join(ROOT, 'examples', 'prometheus', 'alerts.yml');
const ALERT_TESTS = join(ROOT, 'examples', 'prometheus', 'alerts.test.yml');
const DASHBOARD = join(ROOT, 'examples', 'grafana', 'dashboard.json');
/** The reasons a maintenance refuses for: never an alert. */
const MAINTENANCE_REASONS = ['maintenance', 'instance-maintenance', 'frozen'];

const noop = () => {};
const logger = { warn: noop, info: noop, debug: noop, error: noop };

/** Every metric name a guard exports (with the fence on, for `nsro_inflight_writes`). */
let exported: string[];

beforeAll(async () => {
  const registry = new Registry();
  const store = Object.assign(new MemoryStateStore(), {
    // Enough of the fence for the guard to count its writes in flight.
    register: () => ({ holdsLease: () => true, release: async () => {} }),
  });
  namespaceReadOnly({ store, fence: true, metrics: { registry }, logger });
  exported = (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
  expect(exported).toHaveLength(7);
});

/** The `nsro_*` metric names an expression refers to. */
const metricsIn = (expr: string) => [...new Set(expr.match(/\bnsro_[a-z_]+\b/g) ?? [])];

/** On PATH, or where `npm test` (scripts/test.mjs) puts it: out of Debian's prometheus package. */
const promtool = (() => {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter),
    join(process.cwd(), 'node_modules', '.cache', 'promtool', 'usr', 'bin'),
  ];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, 'promtool'), constants.X_OK);
      return join(dir, 'promtool');
    } catch {
      // not here
    }
  }
  return null;
})();

describe('examples/prometheus/alerts.yml', () => {
  const file = parseYaml(readFileSync(ALERTS, 'utf8')) as { groups: Yaml };
  const groups = file.groups as { name: string; rules: Record<string, Yaml>[] }[];
  const rules = groups.flatMap((g) => g.rules);

  it('is a Prometheus rule file: named groups of alerts, each with an expression, a severity and a text', () => {
    expect(Object.keys(file)).toEqual(['groups']);
    expect(groups.length).toBeGreaterThan(0);
    for (const group of groups) expect(group.name).toMatch(/\S/);
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const rule of rules) {
      expect(
        Object.keys(rule).every((k) =>
          ['alert', 'expr', 'for', 'labels', 'annotations'].includes(k),
        ),
      ).toBe(true);
      expect(rule.alert).toMatch(/^NamespaceReadOnly[A-Za-z]+$/);
      expect(typeof rule.expr).toBe('string');
      if (rule.for !== undefined) expect(rule.for).toMatch(/^\d+[smh]$/);
      expect((rule.labels as Record<string, string>).severity).toMatch(/^(warning|critical)$/);
      const annotations = rule.annotations as Record<string, string>;
      expect(annotations.summary).toMatch(/\S/);
      expect(annotations.description).toMatch(/\S/);
    }
  });

  it('refers only to metrics the guard exports', () => {
    for (const rule of rules) {
      const used = metricsIn(rule.expr as string);
      expect(used.length, rule.alert as string).toBeGreaterThan(0);
      for (const name of used) expect(exported, `${rule.alert}: ${name}`).toContain(name);
    }
  });

  it('alerts on a silent push path and on stale knowledge', () => {
    const push = rules.find((r) => /\bnsro_push_up\s*==\s*0\b/.test(r.expr as string));
    expect(push?.for).toMatch(/^\d+m$/);
    expect(rules.some((r) => /\bnsro_state_age_seconds\s*>/.test(r.expr as string))).toBe(true);
  });

  it('alerts on refusals no state asked for, and never on those a maintenance is for', () => {
    const refusalRules = rules.filter((r) => /outcome="refused"/.test(r.expr as string));
    const alerted = new Set<string>();
    for (const rule of rules) {
      const expr = rule.expr as string;
      // Refusals per namespace are refusals by a state: not a thing to alert on.
      expect(expr).not.toContain('nsro_refused_total');
      for (const [, selector] of expr.matchAll(/nsro_decisions_total\{([^}]*)\}/g)) {
        if (!/outcome="refused"/.test(selector as string)) continue;
        const reason = /reason(=~?)"([^"]*)"/.exec(selector as string);
        expect(reason, `${rule.alert} selects refusals without a reason`).not.toBeNull();
        const matches = (r: string) =>
          reason?.[1] === '=' ? r === reason[2] : new RegExp(`^(?:${reason?.[2]})$`).test(r);
        for (const r of MAINTENANCE_REASONS) expect(matches(r), `${rule.alert}: ${r}`).toBe(false);
        for (const r of [
          'store-unavailable',
          'internal-error',
          'lease-lapsed',
          'invalid-namespace',
          'unresolvable-id',
        ]) {
          if (matches(r)) alerted.add(r);
        }
      }
    }
    expect(refusalRules.length).toBeGreaterThan(0);
    expect([...alerted].sort()).toEqual([
      'internal-error',
      'invalid-namespace',
      'lease-lapsed',
      'store-unavailable',
      'unresolvable-id',
    ]);
  });

  it('promtool: the rules check, and their unit tests pass', async () => {
    if (promtool === null) {
      throw new Error(
        "promtool is missing: run npm test (scripts/test.mjs takes it out of Debian's prometheus package) or install it",
      );
    }
    const run = promisify(execFile);
    await run(promtool as string, ['check', 'rules', ALERTS]);
    await run(promtool as string, ['test', 'rules', ALERT_TESTS], { cwd: join(ALERTS, '..') });
  });
});

describe('examples/grafana/dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    title: string;
    uid: string;
    schemaVersion: number;
    panels: { id: number; type: string; title: string; targets?: { expr: string }[] }[];
    templating: { list: { name: string; type: string }[] };
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('is a Grafana dashboard with a Prometheus data source variable', () => {
    expect(dashboard.title).toBe('namespace-read-only');
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.schemaVersion).toBeGreaterThan(30);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    for (const panel of panels) {
      expect(panel.title).toMatch(/\S/);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
  });

  it('every expression refers to metrics the guard exports, and every metric has a panel', () => {
    const shown = new Set<string>();
    for (const panel of panels) {
      for (const { expr } of panel.targets ?? []) {
        const used = metricsIn(expr);
        expect(used.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        for (const name of used) {
          expect(exported, `${panel.title}: ${name}`).toContain(name);
          shown.add(name);
        }
      }
    }
    expect([...shown].sort()).toEqual(exported);
  });
});
