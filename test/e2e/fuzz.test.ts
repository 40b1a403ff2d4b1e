import { afterAll, beforeAll, describe, it } from 'vitest';
import { fuzz, fuzzSettings } from './fuzz/run.js';
import { type Flavor, startVictims, type Victims } from './fuzz/victim.js';
import { INSTANCE_STATES } from './fuzz/world.js';

/**
 * The differential fuzzer (test/e2e/fuzz/), seeded so CI is reproducible: 2,500 raw requests on
 * each Express major, 5,000 in all, to victims whose instance is in no state, in `report` or in
 * maintenance, in a world of namespaces in maintenance, frozen, reporting and writable, some
 * requests carrying bypass tokens. `npm run fuzz -- --runs N --seed S` runs it bigger or elsewhere.
 */

const FLAVORS: readonly Flavor[] = ['express 5', 'express 4'];
const settings = fuzzSettings({ runs: 5_000, seed: 20_260_415 });
const perFlavor = Math.ceil(settings.runs / FLAVORS.length);

let victims: Victims;
beforeAll(async () => {
  victims = await startVictims(FLAVORS, INSTANCE_STATES);
});
afterAll(async () => {
  await victims?.close();
});

describe('differential fuzz: the guard against a GitLab-shaped app, over raw sockets', () => {
  for (const flavor of FLAVORS) {
    it(
      `${flavor}: ${perFlavor} requests, seed ${settings.seed}: no write reaches a closed namespace without its token, refusals name a state that refuses, well-formed requests get the outcome their states and token decide`,
      async () => {
        await fuzz(victims, flavor, {
          runs: perFlavor,
          seed: settings.seed,
          replay: `npm run fuzz -- --runs ${settings.runs} --seed ${settings.seed}`,
        });
      },
      120_000 + perFlavor * 20,
    );
  }
});
