// Targets, and the Markdown tables of BENCHMARKS.md, from a results object (latest.json).

import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const BEGIN = '<!-- results:begin (written by npm run bench; edit outside these markers) -->';
const END = '<!-- results:end -->';

const get = (object, path) =>
  path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), object);

function fmt(value, digits = 0) {
  if (value === undefined || value === null || Number.isNaN(value)) return '—';
  if (typeof value !== 'number') return String(value);
  return value.toLocaleString('en', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

/**
 * Every target of the issue, checked against `results`: `{ name, value, target, met, by }`
 * (`met` is null when the figure was not measured; `by` says how far off a miss is).
 */
export function evaluate(results) {
  const out = [];
  const ratio = (scenario, min) => {
    const value = get(results, `scenarios.${scenario}.ratio`);
    const met = value === undefined ? null : value >= min;
    out.push({
      name: `scenarios.${scenario}.ratio`,
      scenario,
      value,
      target: `>= ${min.toFixed(2)}`,
      met,
      by: met === false ? `${((min - value) * 100).toFixed(1)} points short` : '',
    });
  };
  ratio('guardMemoryRead', 0.98);
  ratio('guardMemoryWriteWarm', 0.97);
  ratio('guardRedisWriteWarm', 0.97);
  ratio('guardMemoryBlocked', 1.0);
  for (const c of ['read', 'writeWarm', 'writeWarmMemory']) {
    const value = get(results, `micro.${c}.nsPerOp`);
    const met = value === undefined ? null : value <= 500;
    out.push({
      name: `micro.${c}.nsPerOp`,
      value,
      target: '<= 500 ns',
      met,
      by: met === false ? `${fmt(value - 500)} ns (${fmt((value / 500 - 1) * 100)}%) over` : '',
    });
  }
  const peer = get(results, 'micro.rateLimitMemory.nsPerOp');
  for (const c of ['writeWarm', 'writeWarmMemory']) {
    const own = get(results, `micro.${c}.nsPerOp`);
    const times = peer !== undefined && own !== undefined ? peer / own : undefined;
    const met = times === undefined ? null : times >= 5;
    out.push({
      name: `micro.rateLimitMemory / micro.${c}`,
      value: times === undefined ? undefined : Math.round(times * 100) / 100,
      target: '>= 5x',
      met,
      by:
        met === false
          ? `${times.toFixed(2)}x; 5x needs ${c} <= ${fmt(peer / 5)} ns (${fmt(own - peer / 5)} ns less)`
          : '',
    });
  }
  const warm = get(results, 'redis.commandsPerRequestWarm');
  out.push({
    name: 'redis.commandsPerRequestWarm',
    value: warm,
    target: '0',
    met: warm === undefined ? null : warm === 0,
    by:
      warm > 0
        ? `${JSON.stringify(get(results, 'redis.warm.requestCommands'))} over ${get(results, 'redis.warm.requests')} requests`
        : '',
  });
  const stampede = get(results, 'redis.stampedeReads');
  out.push({
    name: 'redis.stampedeReads',
    value: stampede,
    target: '1',
    met: stampede === undefined ? null : stampede === 1,
    by: stampede !== undefined && stampede !== 1 ? `${stampede} reads` : '',
  });
  const push = get(results, 'propagation.pushP99Ms');
  out.push({
    name: 'propagation.pushP99Ms',
    value: push,
    target: '<= 50 ms',
    met: push === undefined ? null : push <= 50,
    by: push > 50 ? `${fmt(push - 50, 1)} ms over` : '',
  });
  const memory = get(results, 'memory.bytesFor100kNamespaces');
  out.push({
    name: 'memory.bytesFor100kNamespaces',
    value: memory,
    target: '<= 30 MB',
    met: memory === undefined ? null : memory <= 30e6,
    by: memory > 30e6 ? `${fmt((memory - 30e6) / 1e6, 1)} MB over` : '',
  });
  return out;
}

export function renderMarkdown(results) {
  const m = results.meta ?? {};
  const lines = [];
  lines.push(
    `Measured ${m.date?.slice(0, 10) ?? '?'} (${m.date ?? ''}) on ${m.cores} × ${m.cpu}, ` +
      `${m.memoryGiB} GiB, ${m.os}; Node ${m.node}; ${m.redis ?? 'redis-server'}; commit ` +
      `${m.commit}${m.srcDirty ? ' (src/ had uncommitted changes)' : ''}; load average at start ` +
      `${(m.loadAverageAtStart ?? []).join(' ')}; ${m.quick ? 'quick mode (not a measurement)' : 'full run'}, ${m.seconds ?? '?'} s.`,
  );
  lines.push('');
  const scenarios = Object.entries(results.scenarios ?? {});
  if (scenarios.length > 0) {
    const p = m.params ?? {};
    lines.push(
      `### End to end (autocannon, ${p.connections} connections, ${p.pairs} interleaved pairs × ${p.duration} s; medians)`,
    );
    lines.push('');
    lines.push(
      '| scenario | what | baseline rps | rps | ratio (median of pairs) | pair ratios | target |',
    );
    lines.push('| --- | --- | ---: | ---: | ---: | --- | --- |');
    for (const [name, s] of scenarios) {
      const target =
        s.target === null || s.target === undefined ? '—' : `>= ${s.target.toFixed(2)}`;
      lines.push(
        `| \`${name}\` | ${s.what} | ${fmt(s.baselineRps)} | ${fmt(s.rps)} | ${fmt(s.ratio, 3)} | ` +
          `${s.pairs.map((r) => r.ratio.toFixed(2)).join(' ')} | ${target} |`,
      );
    }
    lines.push('');
  }
  const micro = Object.entries(results.micro ?? {});
  if (micro.length > 0) {
    const s = results.microSetup ?? {};
    lines.push(
      `### The guard's own cost (in process, tinybench; batches of ${s.batch}, median of ${s.rounds} rounds)`,
    );
    lines.push('');
    lines.push('| case | what | ns per decision |');
    lines.push('| --- | --- | ---: |');
    for (const [name, c] of micro) {
      lines.push(
        `| \`${name}\` | ${c.what}${c.synchronous ? '' : ' (async)'} | ${fmt(c.nsPerOp, 1)} |`,
      );
    }
    lines.push('');
  }
  const inServer = Object.entries(results.inServer ?? {});
  if (inServer.length > 0) {
    lines.push(
      '### The same middlewares timed inside a real Express server under load (POST to a writable namespace)',
    );
    lines.push('');
    lines.push('| middleware | ns from entering it until it calls next(), mean | requests timed |');
    lines.push('| --- | ---: | ---: |');
    const label = {
      noop: 'a middleware that only calls next() (the floor)',
      guardMemory: 'the guard, memory store',
      guardRedis: 'the guard, Redis store (warm)',
      rateLimitMemory: 'express-rate-limit, memory store',
    };
    for (const [name, x] of inServer) {
      lines.push(`| ${label[name] ?? name} | ${fmt(x.nsPerRequest)} | ${fmt(x.requests)} |`);
    }
    lines.push('');
  }
  const r = results.redis ?? {};
  if (r.commandsPerRequestWarm !== undefined) {
    lines.push('### Redis traffic (INFO commandstats)');
    lines.push('');
    lines.push('| measurement | result |');
    lines.push('| --- | --- |');
    const traffic = (x) =>
      `all commands ${JSON.stringify(x.commands)} over ${fmt(x.requests)} requests in ${x.seconds} s, ` +
      `of which fence heartbeats (timer, not requests) ${JSON.stringify(x.heartbeats)}`;
    lines.push(
      `| commands per request, warm cache (heartbeats excluded) | ${fmt(r.commandsPerRequestWarm, 6)} (${traffic(r.warm)}) |`,
    );
    lines.push(
      `| commands per request, churn (every run: 10,000 namespaces new to the cache) | ${fmt(r.commandsPerRequestChurn, 4)} (${traffic(r.churn)}) |`,
    );
    const trial = (t) =>
      `${t.reads} read${t.reads === 1 ? '' : 's'} (${JSON.stringify(t.commands)}); ` +
      `${t.waitedForRead} of the writes missed the cache and waited for it; ${t.ms} ms`;
    const left = r.stampede.filter((t) => t.holdMs === 0);
    const held = r.stampede.filter((t) => t.holdMs > 0);
    lines.push(
      `| Redis reads for ${fmt(r.stampedeWrites)} concurrent writes to one cold, writable namespace: the most in any trial | ${fmt(r.stampedeReads)} |`,
    );
    lines.push(`| … Redis left alone, per trial | ${left.map(trial).join('<br>')} |`);
    lines.push(
      `| … Redis held still ${held[0]?.holdMs ?? '?'} ms (CLIENT PAUSE) while the writes arrive, per trial | ${held.map(trial).join('<br>')} |`,
    );
    lines.push(
      `| … the same held, namespace in maintenance (all answered 503) | ${trial(r.stampedeMaintenance)} |`,
    );
    lines.push('');
  }
  const prop = results.propagation ?? {};
  if (prop.push !== undefined) {
    lines.push(
      `### Propagation to ${prop.processes} processes (ms until every process answers the other way)`,
    );
    lines.push('');
    lines.push(
      '| how | toggles | from the change applied in Redis: p50 / p99 / max | from launching the command: p50 / p99 |',
    );
    lines.push('| --- | ---: | --- | --- |');
    const row = (label, x) =>
      `| ${label} | ${x.applied.n} | ${fmt(x.applied.p50, 1)} / ${fmt(x.applied.p99, 1)} / ${fmt(x.applied.max, 1)} | ${fmt(x.launched.p50, 1)} / ${fmt(x.launched.p99, 1)} |`;
    lines.push(row('push: `redis-cli SET` / `DEL` (keyspace notification)', prop.push.redisCli));
    lines.push(
      row(
        'push: `node dist/bin.js enable` / `disable` (announcement + notification)',
        prop.push.cli,
      ),
    );
    lines.push(
      row(
        `TTL only: \`redis-cli\`, \`subscribe: false\`, \`ttl: ${prop.ttlMs}\``,
        prop.ttlOnly.redisCli,
      ),
    );
    lines.push('');
  }
  const mem = results.memory ?? {};
  if (mem.heapUsedBytes !== undefined) {
    lines.push('### Memory');
    lines.push('');
    lines.push(
      `${fmt(mem.count)} namespaces cached in a RedisStateStore: heapUsed +${fmt(mem.heapUsedBytes / 1e6, 1)} MB ` +
        `(${fmt(mem.bytesPerNamespace)} bytes each), plus ${fmt(mem.arrayBuffersBytes / 1e6, 1)} MB of typed-array ` +
        "backing stores outside the heap (lru-cache's index arrays).",
    );
    lines.push('');
  }
  const targets = results.targets ?? [];
  if (targets.length > 0) {
    lines.push('### Targets');
    lines.push('');
    lines.push('| figure | measured | target | verdict |');
    lines.push('| --- | ---: | --- | --- |');
    for (const t of targets) {
      const verdict = t.met === null ? 'not measured' : t.met ? 'met' : `**missed**: ${t.by}`;
      const v = typeof t.value === 'number' ? Math.abs(t.value) : 0;
      const digits = Number.isInteger(t.value) ? 0 : v < 10 ? 3 : v < 1000 ? 1 : 0;
      lines.push(`| \`${t.name}\` | ${fmt(t.value, digits)} | ${t.target} | ${verdict} |`);
    }
    lines.push('');
  }
  const profiles = Object.entries(results.profiles ?? {});
  if (profiles.length > 0) {
    lines.push('### Server profiles (node --cpu-prof under load; self time, % of busy samples)');
    lines.push('');
    for (const [name, p] of profiles) {
      const own = (p.guardTop ?? []).filter((f) => f.pct > 0);
      lines.push(
        `- \`${name}\` (${p.server}, ${fmt(p.rps)} rps while profiled): the guard's own work ` +
          `${p.guardOwnPct}% of busy samples${own.length > 0 ? ` (${own.map((f) => `${f.frame} ${f.pct}%`).join(', ')})` : ''}. ` +
          `Top frames: ${p.top
            .slice(0, 8)
            .map((f) => `${f.frame} ${f.selfPct}%`)
            .join('; ')}`,
      );
    }
    lines.push('');
  }
  if ((results.problems ?? []).length > 0) {
    lines.push(`Problems: ${results.problems.join('; ')}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Replaces the generated section of BENCHMARKS.md (creating the file if needed). */
export function updateBenchmarksMd(file, markdown) {
  const section = `${BEGIN}\n\n${markdown.trim()}\n\n${END}`;
  if (!existsSync(file)) {
    writeFileSync(file, `# Benchmarks\n\n${section}\n`);
    return;
  }
  const text = readFileSync(file, 'utf8');
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  const next =
    begin === -1 || end === -1
      ? `${text.trimEnd()}\n\n${section}\n`
      : `${text.slice(0, begin)}${section}${text.slice(end + END.length)}`;
  writeFileSync(file, next);
}
