import { buildIfStale } from './helpers/dist.js';

/** Runs once per vitest run, before any test file: the one place dist/ is built. */
export default function setup(): void {
  buildIfStale();
}
