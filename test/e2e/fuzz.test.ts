import { afterAll, beforeAll, describe, it } from 'vitest';
import { fuzz, fuzzSettings } from './fuzz/run.js';
import { type Flavor, startVictims, type Victims } from './fuzz/victim.js';

/**
 * The differential fuzzer (test/fuzz/), seeded so CI is reproducible: 2,500 raw requests on each
 * Express major, 5,000 in all. `npm run fuzz -- --runs N --seed S` runs it bigger or elsewhere.
 */

const FLAVORS: readonly Flavor[] = ['express 5', 'express 4'];
const settings = fuzzSettings({ runs: 5_000, seed: 20_260_415 });
const perFlavor = Math.ceil(settings.runs / FLAVORS.length);

let victims: Victims;
beforeAll(async () => {
  victims = await startVictims(FLAVORS);
});
afterAll(async () => {
  await victims?.close();
});

describe('differential fuzz: the guard against a GitLab-shaped app, over raw sockets', () => {
  for (const flavor of FLAVORS) {
    it(
      `${flavor}: ${perFlavor} requests, seed ${settings.seed}: no write reaches a namespace in maintenance, no well-formed write is blocked`,
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
