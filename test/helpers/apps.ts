import type { IncomingMessage, ServerResponse } from 'node:http';
import express5 from 'express';
import express4 from 'express4';
import {
  MemoryStateStore,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
} from '../../src/index.js';

/** Both Express majors the library supports; suites run once per entry. */
export const expressVersions = [
  { name: 'express 5', express: express5 as unknown as typeof express5 },
  { name: 'express 4', express: express4 as unknown as typeof express5 },
] as const;

export type ExpressFactory = (typeof expressVersions)[number]['express'];

/**
 * An app with the guard in front of a catch-all handler that records every request it runs,
 * so a test can assert "the handler never ran" rather than infer it from the status code.
 */
export function guardedApp(express: ExpressFactory, options: NamespaceReadOnlyOptions = {}) {
  const store = options.store ?? new MemoryStateStore();
  // Quiet unless a test passes a logger to read (the default would write to the run's stderr).
  const guard = namespaceReadOnly({ logger: false, ...options, store });
  const handled: { method: string; url: string }[] = [];
  const app = express();
  app.use(guard);
  app.use((req: IncomingMessage, res: ServerResponse) => {
    handled.push({ method: req.method ?? '', url: req.url ?? '' });
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ handled: true }));
  });
  return { app, guard, store, handled };
}
