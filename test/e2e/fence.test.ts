import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAll } from '../helpers/redis.js';
import { type FenceRunReport, runFence } from './fence/run.js';

/**
 * The migration fence, proven end to end (see test/fence/run.ts): four application processes on
 * one real Redis under a steady write load, the operator's real CLI, and the global commit order
 * kept by Redis. `FENCE_RUNS` runs (3 by default; `npm run fence-check` runs 20). The measured
 * wait durations are printed at the end, and written as JSON to `FENCE_REPORT` when it is set.
 */

const RUNS = Number(process.env.FENCE_RUNS ?? 3);
const reports: FenceRunReport[] = [];
let passed = 0;

function stats(values: readonly number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { n: sorted.length, min: sorted[0], p50: at(0.5), max: sorted[sorted.length - 1] };
}

afterAll(async () => {
  await stopAll();
  const summary = {
    runs: RUNS,
    passed,
    /** `enable acme --wait` under load, as the CLI reports it (`acknowledged in N ms`). */
    fenceWaitMs: stats(reports.map((r) => r.fence.cli.waitMs ?? Number.NaN)),
    /** The same, the CLI process from spawn to exit. */
    fenceCliMs: stats(reports.map((r) => r.fence.cli.ms)),
    /** The second wait, one process SIGKILLed once it began: from the kill to the CLI's exit. */
    killToExitMs: stats(reports.map((r) => r.kill.killToExitMs)),
    instanceWaitMs: stats(reports.map((r) => r.instance.cli.waitMs ?? Number.NaN)),
    commitsPerRun: stats(reports.map((r) => r.load.commits)),
    heartbeatTtl: reports[0]?.heartbeatTtl,
  };
  console.log(
    `migration fence: ${passed}/${RUNS} runs passed\n${JSON.stringify(summary, null, 2)}`,
  );
  if (process.env.FENCE_REPORT) {
    writeFileSync(process.env.FENCE_REPORT, JSON.stringify({ summary, reports }, null, 2));
  }
});

describe('migration fence: 4 processes on one Redis, writes under load, the real CLI', () => {
  for (let i = 1; i <= RUNS; i++) {
    it(`run ${i}/${RUNS}`, async () => {
      const r = await runFence();
      reports.push(r);
      const { fence, kill, instance, timeout } = r;
      console.log(
        `run ${i}: enable acme --wait ${fence.cli.waitMs} ms (CLI ${fence.cli.ms} ms); ` +
          `after SIGKILL ${kill.killToExitMs} ms; '*' ${instance.cli.waitMs} ms; ` +
          `${r.load.commits} commits, statuses ${JSON.stringify(r.load.statuses)}`,
      );

      // 1. It returned, every process acknowledged, no acme write committed after it returned,
      //    and the other namespaces went on being written.
      expect(fence.cli.code, fence.cli.stderr).toBe(0);
      expect(fence.cli.stdout).toMatch(/acme: fenced: 4 live process\(es\) acknowledged in \d+ ms/);
      expect(fence.lateAcme).toEqual([]);
      expect(fence.othersAfter).toBeGreaterThan(0);

      // 2. A process SIGKILLed with acme writes in flight drops out by its heartbeat: the wait
      //    returns (exit 0, well inside its --timeout of 20 heartbeat TTLs), and only once the
      //    dead process's registration had expired: it waited for it until then.
      expect(kill.victimInflight).toBeGreaterThanOrEqual(1);
      expect(kill.cli.code, kill.cli.stderr).toBe(0);
      expect(kill.cli.stdout).toMatch(/acme: fenced: 3 live process\(es\) acknowledged/);
      expect(kill.victimRegistered).toEqual({ atKill: true, atExit: false });
      expect(kill.lateAcme).toEqual([]);

      // 3. The instance: nothing at all commits after the marker.
      expect(instance.cli.code, instance.cli.stderr).toBe(0);
      expect(instance.cli.stdout).toMatch(/\*: fenced: 3 live process\(es\) acknowledged/);
      expect(instance.late).toEqual([]);

      // 4. A job held open: exit 3, naming its process and its one write in flight, and only it.
      expect(timeout.cli.code, timeout.cli.stdout).toBe(3);
      expect(timeout.cli.stderr).toMatch(
        new RegExp(
          `^nsro: (namespace-read-only: )?1 process\\(es\\) did not acknowledge "acme" within 1000 ms: \\S+ pid ${timeout.holderPid} \\(\\S+\\): 1 write\\(s\\) in flight\\n$`,
        ),
      );
      expect(timeout.after.code, timeout.after.stderr).toBe(0);
      expect(timeout.after.stdout).toMatch(/acme: fenced: 3 live process\(es\) acknowledged/);
      passed++;
    }, 120_000);
  }
});
