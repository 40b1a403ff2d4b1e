// Summarises a V8 .cpuprofile (from `node --cpu-prof`): the top frames by self time, and how
// much of the sampled time was the guard's own work.
//
// "Own" is decided per sample by walking its stack from the leaf towards the root, past Node's
// internals, native code and the guard's own dependencies (lru-cache, parseurl, path-to-regexp,
// pino): when the first frame left is the package's code (dist/), the sample is the guard's.
// So `res.on` called by the guard counts as the guard's, while everything the guard's `next()`
// runs downstream (body parser, router, handler) counts as theirs, although it is on the
// guard's stack too (that is `guardInclusivePct`, which is not the guard's cost).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ROOT } from './common.mjs';

function frameName(node) {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url ? basename(url) : '';
  const where = file ? ` ${file}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'}${where}`;
}

/** The package's own built code (and nothing else's dist/). */
const GUARD = new RegExp(`^(file://)?${ROOT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/dist/`);
const GUARD_DEPENDENCY = /node_modules\/(lru-cache|parseurl|path-to-regexp|pino)\//;

/** Whether a frame decides attribution: user-land code, not internal, native or the guard's dependency. */
function decides(url) {
  if (!url || url.startsWith('node:') || !url.includes('/')) return false;
  return !GUARD_DEPENDENCY.test(url);
}

/**
 * `{ totalMs, idlePct, guardOwnPct, guardSelfPct, guardInclusivePct, top: [{ frame, selfPct,
 * selfMs }] }`. Percentages are of non-idle samples (what the process spent working).
 */
export function summarize(file, { top = 15, guardMatch = GUARD } = {}) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const hits = new Map();
  const deltas = profile.timeDeltas ?? [];
  // Each sample's duration is the next delta (V8's convention); the last one gets the mean.
  const mean = deltas.length > 0 ? deltas.reduce((a, b) => a + b, 0) / deltas.length : 0;
  profile.samples.forEach((id, i) => {
    const us = deltas[i + 1] ?? mean;
    hits.set(id, (hits.get(id) ?? 0) + us);
  });
  let total = 0;
  let idle = 0;
  let guardSelf = 0;
  let guardInclusive = 0;
  let guardOwn = 0;
  const self = new Map();
  /** The guard's own samples, by the guard's function they were attributed to. */
  const own = new Map();
  const isGuard = (n) => guardMatch.test(n.callFrame.url ?? '');
  for (const [id, us] of hits) {
    const node = nodes.get(id);
    if (node === undefined) continue;
    total += us;
    const name = node.callFrame.functionName;
    if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') {
      if (name === '(idle)') idle += us;
    }
    const key = frameName(node);
    self.set(key, (self.get(key) ?? 0) + us);
    if (isGuard(node)) guardSelf += us;
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const n = nodes.get(at);
      if (n !== undefined && isGuard(n)) {
        guardInclusive += us;
        break;
      }
    }
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const n = nodes.get(at);
      if (n === undefined || !decides(n.callFrame.url)) continue;
      if (isGuard(n)) {
        guardOwn += us;
        const key = frameName(n);
        own.set(key, (own.get(key) ?? 0) + us);
      }
      break;
    }
  }
  const busy = total - idle;
  const pct = (us) => (busy > 0 ? Math.round((1000 * us) / busy) / 10 : 0);
  return {
    totalMs: Math.round(total / 1000),
    idlePct: total > 0 ? Math.round((1000 * idle) / total) / 10 : 0,
    guardOwnPct: pct(guardOwn),
    guardSelfPct: pct(guardSelf),
    guardInclusivePct: pct(guardInclusive),
    top: [...self]
      .filter(([name]) => !name.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([frame, us]) => ({ frame, selfPct: pct(us), selfMs: Math.round(us / 1000) })),
    guardTop: [...own]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([frame, us]) => ({ frame, pct: pct(us) })),
  };
}

export function formatSummary(summary) {
  const lines = [
    `sampled ${summary.totalMs} ms, idle ${summary.idlePct}%; of the busy time the guard's own ` +
      `work is ${summary.guardOwnPct}% (its code's self time ${summary.guardSelfPct}%)`,
  ];
  for (const { frame, selfPct } of summary.top) {
    lines.push(`  ${String(selfPct).padStart(5)}%  ${frame}`);
  }
  if (summary.guardTop.length > 0) {
    lines.push("  the guard's own work, by the guard's function it ran in (with what it called):");
    for (const { frame, pct } of summary.guardTop) {
      lines.push(`  ${String(pct).padStart(5)}%  ${frame}`);
    }
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const file of process.argv.slice(2)) {
    console.log(`${file}\n${formatSummary(summarize(file, { top: 25 }))}`);
  }
}
