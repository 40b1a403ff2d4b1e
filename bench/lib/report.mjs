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
  for (const c of ['read', 'writeWarm', 'writeWarmMemory', 'writeWarmMetrics']) {
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
  const zero = (name, detail) => {
    const value = get(results, name);
    out.push({
      name,
      value,
      target: '0',
      met: value === undefined ? null : value === 0,
      by: value > 0 ? detail() : '',
    });
  };
  zero(
    'redis.commandsPerRequestWarm',
    () =>
      `${JSON.stringify(get(results, 'redis.warm.requestCommands'))} over ${get(results, 'redis.warm.requests')} requests`,
  );
  zero(
    'redis.commandsPerRequestChurn',
    () =>
      `${JSON.stringify(get(results, 'redis.churn.requestCommands'))} over ${get(results, 'redis.churn.requests')} requests`,
  );
  zero('redis.stampedeReadsComplete', () => 'a cold namespace read Redis in the complete mode');
  const stampede = get(results, 'redis.stampedeReads');
  out.push({
    name: 'redis.stampedeReads',
    value: stampede,
    target: '1',
    met: stampede === undefined ? null : stampede === 1,
    by: stampede !== undefined && stampede !== 1 ? `${stampede} reads` : '',
  });
  const ms = (name, max) => {
    const value = get(results, name);
    out.push({
      name,
      value,
      target: `<= ${max} ms`,
      met: value === undefined ? null : value <= max,
      by: value > max ? `${fmt(value - max, 1)} ms over` : '',
    });
  };
  // Until every one of the processes obeys, from the change applied in Redis.
  ms('propagation.pushP99Ms', 50); // store.set / store.delete
  ms('propagation.redisCliP99Ms', 50); // plain redis-cli SET / DEL, quick-start configuration
  for (const name of ['bytesFor100kNamespaces', 'bytesFor100kWithTtl', 'bytesFor100kJson']) {
    const memory = get(results, `memory.${name}`);
    out.push({
      name: `memory.${name}`,
      value: memory,
      target: '<= 30 MB',
      met: memory === undefined ? null : memory <= 30e6,
      by: memory > 30e6 ? `${fmt((memory - 30e6) / 1e6, 1)} MB over` : '',
    });
  }
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
      `### The guard's own cost (in process, tinybench; batches of ${s.batch}, median of ${s.rounds} rounds in each of ${s.processes ?? 1} processes)`,
    );
    lines.push('');
    lines.push('| case | what | ns per decision | each process |');
    lines.push('| --- | --- | ---: | ---: |');
    for (const [name, c] of micro) {
      const each = (c.processMedians ?? [c.nsPerOp]).map((v) => fmt(v, 0)).join(' / ');
      lines.push(
        `| \`${name}\` | ${c.what}${c.synchronous ? '' : ' (async)'} | ${fmt(c.nsPerOp, 1)} | ${each} |`,
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
    lines.push(
      '### Redis traffic (INFO commandstats; the Redis store with its defaults, no fence)',
    );
    lines.push('');
    lines.push('| measurement | result |');
    lines.push('| --- | --- |');
    const traffic = (x) =>
      `store mode ${x.mode}, ${fmt(x.states)} states held; all commands ${JSON.stringify(x.commands)} over ` +
      `${fmt(x.requests)} requests in ${x.seconds} s, of which the store's own timers (canary, announcement, ` +
      `re-verification; not requests) ${JSON.stringify(x.background)}`;
    lines.push(
      `| commands per request, warm (timers excluded) | ${fmt(r.commandsPerRequestWarm, 6)} (${traffic(r.warm)}) |`,
    );
    lines.push(
      `| commands per request, churn: every request a namespace the process never saw (${fmt(r.churn.distinctNamespaces)} of them) | ${fmt(r.commandsPerRequestChurn, 6)} (${traffic(r.churn)}) |`,
    );
    const trial = (t) =>
      `${t.reads} read${t.reads === 1 ? '' : 's'} (${JSON.stringify(t.commands)}); ` +
      `${t.waitedForRead} of the writes waited for a read; ${t.ms} ms`;
    const left = r.stampede.filter((t) => t.holdMs === 0);
    const held = r.stampede.filter((t) => t.holdMs > 0);
    lines.push(
      `| Redis reads for ${fmt(r.stampedeWrites)} concurrent writes to one cold, writable namespace, complete mode, per trial | ${(r.stampedeComplete ?? []).map(trial).join('<br>')} |`,
    );
    lines.push(
      `| … degraded mode (\`keyspaceEvents: 'off'\`, per-key reads): the most in any trial | ${fmt(r.stampedeReads)} |`,
    );
    lines.push(`| … degraded, Redis left alone, per trial | ${left.map(trial).join('<br>')} |`);
    lines.push(
      `| … degraded, Redis held still ${held[0]?.holdMs ?? '?'} ms (CLIENT PAUSE) while the writes arrive, per trial | ${held.map(trial).join('<br>')} |`,
    );
    lines.push(
      `| … degraded and held, namespace in maintenance (all answered 503) | ${trial(r.stampedeMaintenance)} |`,
    );
    lines.push('');
  }
  const prop = results.propagation ?? {};
  if (prop.push !== undefined) {
    lines.push(
      `### Propagation to ${prop.processes} processes (ms until the guard obeys: refuses, or admits again, a write)`,
    );
    lines.push('');
    const ke = prop.keyspaceEvents ?? {};
    lines.push(
      `Each process is the quick start, \`new RedisStateStore({ redis: new Redis(url) })\`; the server's ` +
        `\`notify-keyspace-events\` was "${ke.before ?? '?'}" when they started (stock) and "${ke.after ?? '?'}" ` +
        `once their stores had started (they turn it on).`,
    );
    lines.push('');
    lines.push(
      '| how | toggles | every process, from the change applied in Redis: p50 / p99 / max | each process: p50 / p99 | every process, from launching the command: p50 / p99 |',
    );
    lines.push('| --- | ---: | --- | --- | --- |');
    const row = (label, x) =>
      `| ${label} | ${x.applied.n} | ${fmt(x.applied.p50, 1)} / ${fmt(x.applied.p99, 1)} / ${fmt(x.applied.max, 1)} | ` +
      `${fmt(x.perProcess?.p50, 1)} / ${fmt(x.perProcess?.p99, 1)} | ${fmt(x.launched.p50, 1)} / ${fmt(x.launched.p99, 1)} |`;
    if (prop.push.firstChange !== undefined) {
      lines.push(
        row(
          'the first two changes after the processes started (`redis-cli SET`, `DEL`; cold code), not counted below',
          prop.push.firstChange,
        ),
      );
    }
    lines.push(
      row('plain `redis-cli SET` / `DEL` (keyspace notification only)', prop.push.redisCli),
    );
    if (prop.push.store !== undefined) {
      lines.push(
        row(
          '`store.set` / `store.delete` (MULTI: SET, SADD index, PUBLISH; announcement + notification)',
          prop.push.store,
        ),
      );
    }
    lines.push(
      row('`node dist/bin.js enable` / `disable` (the CLI: store.enable inside)', prop.push.cli),
    );
    lines.push(
      row(
        `for comparison, degraded: \`redis-cli\`, \`subscribe: false\`, \`ttl: ${prop.ttlMs}\``,
        prop.ttlOnly.redisCli,
      ),
    );
    lines.push('');
  }
  const mem = results.memory ?? {};
  if (mem.heapUsedBytes !== undefined) {
    lines.push(
      '### Memory (a RedisStateStore with its defaults holding every state; node --expose-gc)',
    );
    lines.push('');
    lines.push(
      '| namespaces in maintenance, each key holding | heapUsed | per state | arrayBuffers | load (first sync) | Redis busy: read scripts (batches of 1,000) / SCAN |',
    );
    lines.push('| --- | ---: | ---: | ---: | ---: | ---: |');
    const label = {
      plain: '`maintenance`',
      ttl: '`maintenance` with a key TTL (a state object and `expiresAt` each)',
      json: 'a JSON object with its own message (nothing shared)',
    };
    const variants = mem.variants ?? { plain: mem };
    for (const [name, v] of Object.entries(variants)) {
      lines.push(
        `| ${fmt(v.count)}, ${label[name] ?? name} | +${fmt(v.heapUsedBytes / 1e6, 1)} MB | ${fmt(v.bytesPerState)} B | ` +
          `+${fmt(v.arrayBuffersBytes / 1e6, 1)} MB | ${fmt(v.loadMs)} ms | ` +
          `${fmt(v.redisLoad?.eval?.ms)} ms (${fmt(v.redisLoad?.eval?.calls)} calls) / ${fmt(v.redisLoad?.scan?.ms)} ms (${fmt(v.redisLoad?.scan?.calls)} calls) |`,
      );
    }
    lines.push('');
    lines.push(
      `Each figure is the store that holds the states, from before it was built to after it held them all ` +
        `(its own connections and its degraded-mode cache's preallocated arrays included). A store holding ` +
        `nothing costs +${fmt(mem.emptyStoreBytes / 1e6, 1)} MB of heap and ` +
        `+${fmt(mem.emptyStoreArrayBuffersBytes / 1e6, 1)} MB of arrayBuffers (lru-cache's typed index arrays, ` +
        'outside the V8 heap). Every process loads its copy when it starts and again every ' +
        '`resyncInterval` (60 s), in batches of 1,000 states: Redis is held for one batch at a time.',
    );
    lines.push('');
    const disturbed = Object.entries(variants).flatMap(([name, v]) => {
      const d = v.degraded ?? {};
      const first = v.firstSync;
      const notes = [];
      if (first !== undefined && first !== null && first.mode !== 'complete') {
        notes.push(
          `the loading store's \`ready()\` resolved ${first.mode} (${first.cause}) before its load ended`,
        );
      }
      if ((d.empty ?? []).length > 0) {
        notes.push(`the empty store beside it degraded (${d.empty.join(', ')}) and reloaded`);
      }
      return notes.length > 0 ? [`${name}: ${notes.join('; ')}`] : [];
    });
    if (disturbed.length > 0) {
      lines.push(`While loading: ${disturbed.join('. ')}.`);
      lines.push('');
    }
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
