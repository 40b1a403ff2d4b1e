// End-to-end throughput: one server process per configuration on 127.0.0.1 (bench/server.mjs),
// autocannon in this process, and every scenario measured in interleaved pairs against bare
// Express 5 (baseline, scenario, baseline, scenario, ...), so that the drift of a shared, noisy
// machine hits both sides of a pair alike. Reported: the median rps of each side and the median
// of the per-pair ratios.

import autocannon from 'autocannon';
import { BENCH_DIR, median, round, startNode } from './lib/common.mjs';

const JSON_HEADERS = { 'content-type': 'application/json' };
const BODY = '{"title":"x"}';

const get = (path) => ({ method: 'GET', path });
const post = (path) => ({ method: 'POST', path, headers: JSON_HEADERS, body: BODY });

/** Distinct namespaces per churn run. */
export const CHURN_NAMESPACES = 10_000;

/**
 * `server`: the configuration under test; `request`: what both sides send; `expect`: the
 * status the configuration must answer (the baseline always answers 200). `calibration`: a
 * check of the method itself (A/A, an empty middleware), left out of --quick.
 */
export const SCENARIOS = [
  {
    name: 'guardMemoryRead',
    what: 'guard, memory store: GET (read)',
    server: 'guard-memory',
    request: get('/acme/proj/-/issues'),
    expect: 200,
    target: 0.98,
  },
  {
    name: 'guardMemoryWriteWarm',
    what: 'guard, memory store: POST to a writable namespace',
    server: 'guard-memory',
    request: post('/acme/proj/-/issues'),
    expect: 200,
    target: 0.97,
  },
  {
    name: 'guardMemoryBlocked',
    what: 'guard, memory store: POST to a namespace in maintenance (503) vs a 200 from the baseline',
    server: 'guard-memory',
    request: post('/frozen/proj/-/issues'),
    expect: 503,
    target: 1.0,
  },
  {
    name: 'guardRedisWriteWarm',
    what: 'guard, Redis store (defaults: complete copy): POST to a writable namespace, warm',
    server: 'guard-redis',
    request: post('/acme/proj/-/issues'),
    expect: 200,
    target: 0.97,
  },
  {
    name: 'guardRedisWriteChurn',
    what: `guard, Redis store (defaults): POSTs across ${CHURN_NAMESPACES.toLocaleString('en')} namespaces new to each run (never seen by the process)`,
    server: 'guard-redis',
    request: post('/acme/proj/-/issues'),
    churn: true,
    expect: 200,
    target: null,
  },
  {
    name: 'rateLimitMemoryWrite',
    what: 'peer: express-rate-limit, memory store: POST',
    server: 'rate-limit',
    request: post('/acme/proj/-/issues'),
    expect: 200,
    target: null,
  },
  {
    name: 'aaRead',
    what: "A/A: a second, identical bare Express process: GET (the method's own bias)",
    server: 'baseline-b',
    request: get('/acme/proj/-/issues'),
    expect: 200,
    target: null,
    calibration: true,
  },
  {
    name: 'aaWrite',
    what: 'A/A: a second, identical bare Express process: POST',
    server: 'baseline-b',
    request: post('/acme/proj/-/issues'),
    expect: 200,
    target: null,
    calibration: true,
  },
  {
    name: 'noopLayerRead',
    what: 'one more middleware that only calls next(): GET (what any layer costs in Express)',
    server: 'noop',
    request: get('/acme/proj/-/issues'),
    expect: 200,
    target: null,
    calibration: true,
  },
  {
    name: 'noopLayerWrite',
    what: 'one more middleware that only calls next(): POST',
    server: 'noop',
    request: post('/acme/proj/-/issues'),
    expect: 200,
    target: null,
    calibration: true,
  },
];

/** Starts one server process per configuration the scenarios need (plus the baseline). */
export async function startServers(scenarios, { redisPort, nodeArgs = [] } = {}) {
  const configs = ['baseline', ...new Set(scenarios.map((s) => s.server))];
  const started = await Promise.all(
    configs.map((config) =>
      startNode(`${BENCH_DIR}/server.mjs`, [config, '--redis-port', String(redisPort)], {
        nodeArgs,
      }),
    ),
  );
  return Object.fromEntries(configs.map((config, i) => [config, started[i]]));
}

let churnRun = 0;

/** One autocannon run; resolves with `{ rps, requests, statuses, errors, timeouts }`. */
export async function load(port, scenario, { duration, connections }) {
  const requests = [{ ...scenario.request }];
  if (scenario.churn) {
    // Every run gets namespaces no earlier run used: the first pass over them is new to the server.
    const run = ++churnRun;
    let i = 0;
    requests[0].setupRequest = (req) => {
      i = (i + 1) % CHURN_NAMESPACES;
      req.path = `/r${run}-n${i}/proj/-/issues`;
      return req;
    };
  }
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    pipelining: 1,
    duration,
    // autocannon stops only on a sample tick: 100 ms ticks let a 0.3 s quick run be 0.3 s.
    sampleInt: 100,
    requests,
  });
  const statuses = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) {
    statuses[code] = count;
  }
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    rps: total / result.duration,
    requests: total,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

function check(run, expect, label, problems) {
  const good = run.statuses[expect] ?? 0;
  if (run.requests === 0 || good !== run.requests || run.errors > 0 || run.timeouts > 0) {
    problems.push(
      `${label}: expected only ${expect}, got ${JSON.stringify(run.statuses)}, ` +
        `${run.errors} errors, ${run.timeouts} timeouts`,
    );
  }
}

/**
 * Runs `pairs` interleaved pairs per scenario. Returns `{ scenarios, problems }` where each
 * scenario has rps (median), baselineRps (median), ratio (median of the pair ratios) and pairs.
 */
export async function runPairs(servers, scenarios, options) {
  const { pairs, duration, warmup, connections, log = console.log } = options;
  const problems = [];
  const out = {};
  const baseline = servers.baseline.info.port;
  for (const scenario of scenarios) {
    const port = servers[scenario.server].info.port;
    // JIT and caches warm on both sides before anything is counted.
    await load(baseline, scenario, { duration: warmup, connections });
    await load(port, { ...scenario, churn: false }, { duration: warmup, connections });
    const rows = [];
    for (let i = 0; i < pairs; i++) {
      const a = await load(baseline, scenario, { duration, connections });
      const b = await load(port, scenario, { duration, connections });
      check(a, 200, `${scenario.name} pair ${i + 1} baseline`, problems);
      check(b, scenario.expect, `${scenario.name} pair ${i + 1}`, problems);
      rows.push({ baselineRps: round(a.rps), rps: round(b.rps), ratio: round(b.rps / a.rps, 4) });
      log(
        `  ${scenario.name.padEnd(22)} pair ${i + 1}/${pairs}: baseline ${round(a.rps)} rps, ` +
          `${round(b.rps)} rps, ratio ${(b.rps / a.rps).toFixed(3)}`,
      );
    }
    out[scenario.name] = {
      rps: round(median(rows.map((r) => r.rps))),
      baselineRps: round(median(rows.map((r) => r.baselineRps))),
      ratio: round(median(rows.map((r) => r.ratio)), 4),
      target: scenario.target,
      what: scenario.what,
      pairs: rows,
    };
  }
  return { scenarios: out, problems };
}
