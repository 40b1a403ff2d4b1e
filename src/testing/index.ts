/**
 * `namespace-read-only/testing`: what an application's own tests need. A guard on a store of its
 * own that a test flips (`createTestGuard`), and helpers that tell the guard's refusal from the
 * application's own answer in a response. Every module here imports the main entry by the
 * package's name, so a test meets the very classes its application uses.
 */
export { MemoryStateStore } from 'namespace-read-only';
export {
  expectNotRefusedByGuard,
  expectRefusedByGuard,
  GuardExpectationError,
  type GuardRefusal,
  guardRefusal,
  isRefusedByGuard,
  type RefusalExpectation,
  type ResponseLike,
} from './refusal.js';
export { createTestGuard, type TestGuard, type TestGuardOptions } from './test-guard.js';
