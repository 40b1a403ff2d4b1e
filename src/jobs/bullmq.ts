/**
 * `namespace-read-only/bullmq`: background jobs under the guard (issue 13, in progress).
 * It imports the main entry by the package's name, so it shares its classes.
 */
export { NamespaceReadOnlyError } from 'namespace-read-only';
