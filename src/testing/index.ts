/**
 * `namespace-read-only/testing`: what an application's own tests need (issue 13, in progress).
 * It imports the main entry by the package's name, so it shares its classes.
 */
export { MemoryStateStore } from 'namespace-read-only';
