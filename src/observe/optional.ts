import { createRequire } from 'node:module';

/**
 * Optional peer dependencies (prom-client, @opentelemetry/api), loaded only when used and never
 * by a top-level import: an application without them installed loads nothing and pays nothing.
 *
 * `require` from this file's own location, in both builds: the ESM build has `import.meta.url`,
 * and the CommonJS build gets it from tsup's shim (`shims: true`, derived from `__filename`).
 * Resolving from the package itself is what a peer dependency promises (npm, pnpm and Yarn all
 * make a peer resolvable from the package that declares it). Both peers are CommonJS-loadable:
 * prom-client is CommonJS only, so the classes are those of the copy the application's own
 * `import` or `require` gets; @opentelemetry/api keeps its state on a process-wide global, so
 * its CommonJS and ESM copies share the registered context manager and tracer provider.
 */

const loaded = new Map<string, unknown>();

/**
 * The module `name`, or `null` when it is not installed. Resolved once per process: the answer
 * (either) is remembered. Any other failure to load it is thrown.
 */
export function loadOptional<T>(name: string): T | null {
  if (loaded.has(name)) return loaded.get(name) as T | null;
  let found: unknown = null;
  try {
    found = createRequire(import.meta.url)(name);
  } catch (error) {
    if (!isNotFound(error, name)) throw error;
  }
  loaded.set(name, found);
  return found as T | null;
}

/** `name` itself cannot be found (not a module it requires in turn). */
function isNotFound(error: unknown, name: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (
    code === 'MODULE_NOT_FOUND' &&
    typeof message === 'string' &&
    message.startsWith(`Cannot find module '${name}'`)
  );
}
