#!/usr/bin/env node
// `npm run bench [-- --quick] [-- --only http,micro,redis,propagation,memory] [-- --profile <scenario>]`
//
// The benchmarks of namespace-read-only (see BENCHMARKS.md for what each one measures and why):
//   http         end-to-end rps, one server process per configuration, autocannon in this
//                process, interleaved pairs against bare Express 5
//   micro        the guard's own cost per decision, in process (bench/micro.mjs, tinybench)
//   redis        Redis commands per request (warm, churn over namespaces never seen) on the Redis
//                store's complete mode, and reads caused by a stampede (complete and degraded)
//   propagation  time from a change in Redis (plain redis-cli SET, store.set, the CLI) to every
//                one of 8 quick-start processes obeying it
//   memory       heap held by a store's complete copy of 100,000 namespaces in maintenance
//                (bench/memory.mjs, --expose-gc)
//
// Builds dist/ first when it is missing or older than src/. Starts a private, stock
// redis-server (keyspace notifications off: the stores turn them on) on a free loopback port and
// stops it at the end. Loopback only.
//
// The full run writes bench/results/latest.json and the results section of BENCHMARKS.md.
// --quick runs everything scaled down in a few seconds and writes bench/results/quick.json:
// it checks that the benchmarks run and that every answer is right, never how fast anything is.
// Exit code: non-zero when something did not run or answered wrongly; a missed target is
// reported, not an error.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { load, runPairs, SCENARIOS, startServers } from './http.mjs';
import { runInServer } from './in-server.mjs';
import { ensureBuilt } from './lib/build.mjs';
import { BENCH_DIR, median, ROOT, round, runNodeJson, startNode } from './lib/common.mjs';
import { formatSummary, summarize } from './lib/cpuprofile.mjs';
import { startRedis } from './lib/redis.mjs';
import { evaluate, renderMarkdown, updateBenchmarksMd } from './lib/report.mjs';
import { runPropagation } from './propagation.mjs';
import { churnCommands, stampede, warmCommands } from './redis-traffic.mjs';

const SECTIONS = ['http', 'micro', 'inServer', 'redis', 'propagation', 'memory'];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'string' },
    // Only these end-to-end scenarios (comma-separated names); nothing is written.
    scenarios: { type: 'string' },
    pairs: { type: 'string' },
    duration: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const quick = values.quick;
const only = values.only === undefined ? SECTIONS : values.only.split(',').map((s) => s.trim());
const scenarios =
  values.scenarios === undefined
    ? quick
      ? SCENARIOS.filter((s) => !s.calibration)
      : SCENARIOS
    : values.scenarios.split(',').map((name) => {
        const found = SCENARIOS.find((s) => s.name === name.trim());
        if (found === undefined) throw new Error(`--scenarios: unknown scenario ${name}`);
        return found;
      });
for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`--only: unknown section ${s}`);

const P = quick
  ? {
      pairs: 1,
      duration: 0.3,
      warmup: 0.1,
      connections: 8,
      trafficDuration: 0.3,
      stampedeWrites: 200,
      stampedeTrials: 1,
      stampedeHoldMs: 200,
      processes: 2,
      toggles: 4,
      storeToggles: 4,
      settleMs: 0,
      microProcesses: 1,
      cliToggles: 2,
      ttlToggles: 2,
      ttl: 100,
      memoryCount: 10_000,
      profileSeconds: 1,
    }
  : {
      pairs: 7,
      duration: 4,
      warmup: 2,
      connections: 16,
      trafficDuration: 5,
      stampedeWrites: 1000,
      stampedeTrials: 3,
      stampedeHoldMs: 500,
      processes: 8,
      toggles: 60,
      storeToggles: 60,
      // After the 8 processes report ready, before the first toggle: starting 8 Node processes
      // at once keeps 2 cores busy for a moment, which is not the steady state of a fleet.
      settleMs: 2000,
      microProcesses: 3,
      cliToggles: 60,
      ttlToggles: 60,
      ttl: 250,
      memoryCount: 100_000,
      profileSeconds: 6,
    };
if (values.pairs !== undefined) P.pairs = Number(values.pairs);
if (values.duration !== undefined) P.duration = Number(values.duration);

const started = Date.now();
const log = (line) => console.log(line);
let sectionStart = Date.now();
/** Logs the time the previous section took; for keeping --quick quick. */
function lap(what) {
  const now = Date.now();
  log(`  (${what}: ${round((now - sectionStart) / 1000, 1)} s)`);
  sectionStart = now;
}
const problems = [];

function git(args) {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

function redisVersion() {
  try {
    const out = execFileSync('redis-server', ['--version'], { encoding: 'utf8' });
    return `redis-server ${/v=(\S+)/.exec(out)?.[1] ?? out.trim()}`;
  } catch {
    return null;
  }
}

/**
 * Runs `scenario`'s server under `node --cpu-prof`, loads it for `seconds`, and summarises the
 * profile: where a server spends its time under that load.
 */
async function profileScenario(name, redis, seconds) {
  const scenario = SCENARIOS.find((s) => s.name === name) ?? {
    name,
    server: name,
    request: SCENARIOS[1].request,
  };
  const dir = join(os.tmpdir(), `nsro-bench-prof-${process.pid}-${name}`);
  rmSync(dir, { recursive: true, force: true });
  const server = await startNode(
    join(BENCH_DIR, 'server.mjs'),
    [scenario.server, '--redis-port', String(redis.port)],
    { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] },
  );
  await load(
    server.info.port,
    { ...scenario, churn: false },
    { duration: 1, connections: P.connections },
  );
  const run = await load(server.info.port, scenario, {
    duration: seconds,
    connections: P.connections,
  });
  await server.stop();
  const files = (await import('node:fs')).readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`profile of ${name}: no .cpuprofile written`);
  const summary = summarize(join(dir, files[0] ?? ''), { top: 12 });
  rmSync(dir, { recursive: true, force: true });
  return { scenario: name, server: scenario.server, rps: round(run.rps), ...summary };
}

ensureBuilt();
const meta = {
  date: new Date().toISOString(),
  quick,
  node: process.version,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.cpus().length,
  memoryGiB: round(os.totalmem() / 2 ** 30, 1),
  os: `${os.type()} ${os.release()}`,
  loadAverageAtStart: os.loadavg().map((l) => round(l, 2)),
  redis: redisVersion(),
  commit: git(['rev-parse', '--short', 'HEAD']),
  srcDirty: (git(['status', '--porcelain', '--', 'src']) ?? '') !== '',
  params: P,
};
log(
  `bench: ${quick ? 'quick' : 'full'} run, ${meta.cores} cores, Node ${meta.node}, load ${meta.loadAverageAtStart.join(' ')}`,
);

const redis = await startRedis();
await redis.cli('set', 'nsro:state:frozen', 'maintenance');
const results = {
  meta,
  scenarios: {},
  micro: {},
  inServer: {},
  redis: {},
  propagation: {},
  memory: {},
};
let servers = null;

try {
  if (values.profile !== undefined) {
    log(`profile: ${values.profile}, ${P.profileSeconds} s under load`);
    const summary = await profileScenario(values.profile, redis, P.profileSeconds);
    log(formatSummary(summary));
    process.exitCode = 0;
  } else {
    const needServers = only.includes('http') || only.includes('redis');
    if (needServers) {
      const redisScenario = SCENARIOS.filter((s) => s.server === 'guard-redis');
      servers = await startServers(
        only.includes('redis') ? [...scenarios, ...redisScenario] : scenarios,
        {
          redisPort: redis.port,
        },
      );
      lap('servers started');
    }

    if (only.includes('http')) {
      log(
        `\nhttp: ${P.pairs} interleaved pairs per scenario, ${P.duration} s each, ${P.connections} connections`,
      );
      const http = await runPairs(servers, scenarios, { ...P, log });
      results.scenarios = http.scenarios;
      problems.push(...http.problems);
      lap('http');
    }

    if (only.includes('redis')) {
      log('\nredis: commands per request and stampede');
      const port = servers['guard-redis'].info.port;
      const warm = await warmCommands(redis, port, {
        duration: P.trafficDuration,
        connections: P.connections,
      });
      if ((warm.statuses[200] ?? 0) !== warm.requests) {
        problems.push(`redis warm: expected only 200, got ${JSON.stringify(warm.statuses)}`);
      }
      const churn = await churnCommands(redis, port, {
        duration: P.trafficDuration,
        connections: P.connections,
      });
      if ((churn.statuses[200] ?? 0) !== churn.requests) {
        problems.push(`redis churn: expected only 200, got ${JSON.stringify(churn.statuses)}`);
      }
      for (const [label, x] of [
        ['warm', warm],
        ['churn', churn],
      ]) {
        // What 0 commands per request is claimed of: the complete mode, without the fence.
        if (x.mode !== 'complete') problems.push(`redis ${label}: store mode ${x.mode}`);
        if (Object.keys(x.heartbeats).length > 0) {
          problems.push(`redis ${label}: fence heartbeats ${JSON.stringify(x.heartbeats)}`);
        }
      }
      // The stampede: on the complete mode (no read at all), then on the degraded mode left
      // alone and with Redis held still while the writes arrive (on a server whose read budget
      // outlasts the hold; see redis-traffic.mjs). The complete server goes first: holding
      // Redis can hold its canary back.
      const complete = [];
      for (let t = 0; t < P.stampedeTrials; t++) {
        complete.push(await stampede(redis, port, { writes: P.stampedeWrites, mode: 'complete' }));
      }
      const degradedServer = await startNode(join(BENCH_DIR, 'server.mjs'), [
        'guard-redis-degraded',
        '--redis-port',
        String(redis.port),
      ]);
      const trials = [];
      let maintenanceTrial;
      try {
        const dport = degradedServer.info.port;
        for (let t = 0; t < P.stampedeTrials; t++) {
          trials.push(await stampede(redis, dport, { writes: P.stampedeWrites }));
          trials.push(
            await stampede(redis, dport, { writes: P.stampedeWrites, holdMs: P.stampedeHoldMs }),
          );
        }
        maintenanceTrial = await stampede(redis, dport, {
          writes: P.stampedeWrites,
          maintenance: true,
          holdMs: P.stampedeHoldMs,
        });
      } finally {
        await degradedServer.stop();
      }
      for (const t of [...complete, ...trials, maintenanceTrial]) {
        if (!t.allExpected) problems.push(`stampede ${t.namespace}: ${JSON.stringify(t.statuses)}`);
      }
      // A degraded trial without a read tested nothing.
      for (const t of [...trials, maintenanceTrial]) {
        if (t.reads < 1) problems.push(`stampede ${t.namespace}: no Redis read at all`);
      }
      const traffic = (x) => ({
        requests: x.requests,
        seconds: x.seconds,
        mode: x.mode,
        states: x.states,
        commands: x.commands,
        requestCommands: x.requestCommands,
        background: x.background,
        heartbeats: x.heartbeats,
      });
      results.redis = {
        commandsPerRequestWarm: warm.perRequest,
        warm: traffic(warm),
        commandsPerRequestChurn: round(churn.perRequest, 5),
        churn: { ...traffic(churn), distinctNamespaces: churn.distinctNamespaces },
        stampedeReadsComplete: Math.max(...complete.map((t) => t.reads)),
        stampedeReads: Math.max(...trials.map((t) => t.reads)),
        stampedeWrites: P.stampedeWrites,
        stampedeComplete: complete,
        stampede: trials,
        stampedeMaintenance: maintenanceTrial,
      };
      log(
        `  warm (${warm.mode}): ${JSON.stringify(warm.requestCommands)} over ${warm.requests} requests ` +
          `(background ${JSON.stringify(warm.background)}); churn (${churn.mode}, ` +
          `${churn.distinctNamespaces} new namespaces): ${JSON.stringify(churn.requestCommands)} over ` +
          `${churn.requests} requests (background ${JSON.stringify(churn.background)}), ` +
          `${round(churn.perRequest, 5)} per request; stampede reads, complete: ` +
          `${complete.map((t) => t.reads).join(', ')}; degraded: ` +
          `${trials.map((t) => `${t.reads} (${t.waitedForRead} waited)`).join(', ')}; maintenance: ` +
          `${JSON.stringify(maintenanceTrial.commands)}`,
      );
      lap('redis');
    }

    if (servers !== null) {
      await Promise.all(Object.values(servers).map((s) => s.stop()));
      servers = null;
    }

    if (only.includes('micro')) {
      log('\nmicro: the guard called in process (tinybench)');
      // Several processes, one after the other: which of its JIT states a process lands in
      // moves a case by ~10% from one process to the next (see micro.mjs), and the rounds of
      // one process agree with each other, so more processes, not more rounds, narrow it.
      const runs = [];
      for (let i = 0; i < P.microProcesses; i++) {
        runs.push(
          await runNodeJson(join(BENCH_DIR, 'micro.mjs'), [
            '--redis-port',
            String(redis.port),
            ...(quick ? ['--quick'] : []),
          ]),
        );
      }
      const micro = { ...runs[0], cases: {} };
      for (const name of Object.keys(runs[0].cases)) {
        const all = runs.map((r) => r.cases[name]);
        const rounds = all.flatMap((c) => c.rounds);
        micro.cases[name] = {
          ...all[0],
          nsPerOp: round(median(rounds), 1),
          rounds,
          processMedians: all.map((c) => c.nsPerOp),
        };
      }
      results.micro = micro.cases;
      results.microSetup = {
        batch: micro.batch,
        rounds: micro.roundsRun,
        processes: runs.length,
        timePerTaskMs: micro.timePerTaskMs,
      };
      for (const [name, c] of Object.entries(micro.cases)) {
        log(`  ${name.padEnd(16)} ${String(c.nsPerOp).padStart(8)} ns/op`);
        if (!(c.nsPerOp > 0)) problems.push(`micro ${name}: no measurement`);
      }
      lap('micro');
    }

    if (only.includes('inServer')) {
      log('\ninServer: the middleware timed inside a real server under load');
      const inServer = await runInServer(redis, {
        duration: P.duration,
        warmup: P.warmup,
        connections: P.connections,
      });
      results.inServer = inServer;
      for (const [name, r] of Object.entries(inServer)) {
        log(`  ${name.padEnd(16)} ${String(r.nsPerRequest).padStart(8)} ns/request (${r.rps} rps)`);
        if (Object.keys(r.statuses).some((code) => code !== '200')) {
          problems.push(`inServer ${name}: expected only 200, got ${JSON.stringify(r.statuses)}`);
        }
        if (!(r.requests > 0)) problems.push(`inServer ${name}: nothing was timed`);
      }
      lap('inServer');
    }

    if (only.includes('propagation')) {
      log(`\npropagation: ${P.processes} processes`);
      const prop = await runPropagation(redis, { ...P, log });
      results.propagation = {
        pushP50Ms: prop.push.store.applied.p50,
        pushP99Ms: prop.push.store.applied.p99,
        redisCliP50Ms: prop.push.redisCli.applied.p50,
        redisCliP99Ms: prop.push.redisCli.applied.p99,
        ttlOnlyP99Ms: prop.ttlOnly.redisCli.applied.p99,
        ...prop,
      };
      const timedOut =
        prop.push.firstChange.timedOut +
        prop.push.redisCli.timedOut +
        prop.push.store.timedOut +
        prop.push.cli.timedOut +
        prop.ttlOnly.redisCli.timedOut;
      if (timedOut > 0)
        problems.push(`propagation: ${timedOut} toggles never reached every process`);
      if (prop.push.http503 !== P.processes) {
        problems.push(`propagation: ${prop.push.http503}/${P.processes} processes answered 503`);
      }
      if (prop.push.modes.some((m) => m !== 'complete')) {
        problems.push(`propagation: store modes at the end ${JSON.stringify(prop.push.modes)}`);
      }
      // The quick start: notifications off on the server until the stores turned them on.
      const { before, after } = prop.keyspaceEvents;
      const covered = (f) =>
        f.includes('K') &&
        (f.includes('A') || (f.includes('$') && f.includes('g') && f.includes('x')));
      if (before !== '' || !covered(after)) {
        problems.push(`propagation: notify-keyspace-events "${before}" -> "${after}"`);
      }
      const line = (x) =>
        `p50 ${x.applied.p50} ms, p99 ${x.applied.p99} ms (each process: p99 ${x.perProcess.p99} ms)`;
      log(
        `  first change after start: ${prop.push.firstChange.series.join(', ')} ms; ` +
          `redis-cli SET/DEL: ${line(prop.push.redisCli)}; store.set/delete: ${line(prop.push.store)}; ` +
          `CLI: p99 ${prop.push.cli.applied.p99} ms; ttl only: p99 ${prop.ttlOnly.redisCli.applied.p99} ms`,
      );
      lap('propagation');
    }

    if (only.includes('memory')) {
      log(
        `\nmemory: ${P.memoryCount.toLocaleString('en')} namespaces in maintenance, loaded by a RedisStateStore`,
      );
      // `plain` is the figure the target is for; `ttl` and `json` are the costlier kinds of state
      // (one object per namespace), held to the same bound.
      const variants = {};
      for (const variant of ['plain', 'ttl', 'json']) {
        const m = await runNodeJson(
          join(BENCH_DIR, 'memory.mjs'),
          [
            '--redis-port',
            String(redis.port),
            '--count',
            String(P.memoryCount),
            '--variant',
            variant,
          ],
          { nodeArgs: ['--expose-gc'] },
        );
        if (m.states !== P.memoryCount || m.mode !== 'complete') {
          problems.push(`memory ${variant}: ${m.states} states, mode ${m.mode}`);
        }
        variants[variant] = m;
        log(
          `  ${variant.padEnd(5)} heapUsed +${m.heapUsedBytes} bytes (${m.bytesPerState} per state), ` +
            `arrayBuffers +${m.arrayBuffersBytes}; an empty store +${m.emptyStoreBytes}; load ${m.loadMs} ms ` +
            `(Redis: load script ${m.redisLoad.eval.ms} ms, SCAN ${m.redisLoad.scan.ms} ms); ` +
            `ready() ${m.firstSync.mode}; degraded: ${JSON.stringify(m.degraded)}`,
        );
      }
      const plain = variants.plain;
      results.memory = {
        ...(P.memoryCount === 100_000 && {
          bytesFor100kNamespaces: plain.heapUsedBytes,
          bytesFor100kWithTtl: variants.ttl.heapUsedBytes,
          bytesFor100kJson: variants.json.heapUsedBytes,
        }),
        ...plain,
        variants,
      };
      lap('memory');
    }

    // Profiles: the baseline, the guard's two warm-write scenarios, and whatever else missed
    // its end-to-end target, so the report can say where the time goes.
    results.targets = evaluate(results);
    const missed = results.targets.filter((t) => t.met === false && t.scenario !== undefined);
    if (!quick && only.includes('http') && values.scenarios === undefined) {
      results.profiles = {};
      const names = [
        ...new Set([
          'baseline',
          'guardMemoryWriteWarm',
          'guardRedisWriteWarm',
          ...missed.map((t) => t.scenario),
        ]),
      ];
      for (const name of names) {
        log(`\nprofile: ${name} (node --cpu-prof, ${P.profileSeconds} s under load)`);
        const summary = await profileScenario(name, redis, P.profileSeconds);
        results.profiles[name] = summary;
        log(formatSummary(summary));
      }
    }
  }
} catch (error) {
  problems.push(`crashed: ${error?.stack ?? error}`);
} finally {
  if (servers !== null) await Promise.all(Object.values(servers).map((s) => s.stop()));
  await redis.stop();
}

if (values.profile === undefined) {
  results.meta.seconds = round((Date.now() - started) / 1000, 1);
  results.problems = problems;
  results.targets ??= evaluate(results);
  log(`\n${renderMarkdown(results)}`);
  if (!values['no-write'] && only.length === SECTIONS.length && values.scenarios === undefined) {
    mkdirSync(join(BENCH_DIR, 'results'), { recursive: true });
    const file = join(BENCH_DIR, 'results', quick ? 'quick.json' : 'latest.json');
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    // In the repository's own style, so that `npm run lint` (biome) accepts the file.
    spawnSync(join(ROOT, 'node_modules', '.bin', 'biome'), ['format', '--write', file], {
      stdio: 'ignore',
    });
    log(`bench: wrote ${file}`);
    if (!quick && problems.length === 0) {
      updateBenchmarksMd(join(ROOT, 'BENCHMARKS.md'), renderMarkdown(results));
      spawnSync(
        join(ROOT, 'node_modules', '.bin', 'biome'),
        ['format', '--write', 'BENCHMARKS.md'],
        {
          cwd: ROOT,
          stdio: 'ignore',
        },
      );
      log('bench: updated the results section of BENCHMARKS.md');
    }
  }
}
for (const p of problems) console.error(`bench: PROBLEM: ${p}`);
log(
  `bench: ${problems.length === 0 ? 'ok' : `${problems.length} problem(s)`} in ${round((Date.now() - started) / 1000, 1)} s`,
);
process.exitCode = problems.length === 0 ? 0 : 1;
