// A small multi-tenant notes service, written as an application would be: tenants live under
// /t/<tenant>/..., the guard stands in front of everything, and the app has refusals of its own
// (a 503 while its search index is down). Its tests are app.test.mjs, beside it.
//
// The app does not create its guard: production hands it one on the fleet's store, tests one on
// a store they flip (`createTestGuard` from 'namespace-read-only/testing').
//
//   import { namespaceReadOnly, RedisStateStore } from 'namespace-read-only';
//   const guard = namespaceReadOnly({ ...guardOptions, store: new RedisStateStore({ redis }) });
//   createApp({ guard }).listen(3000);

import express from 'express';
import { namespaceReadOnly } from 'namespace-read-only';

/** What the guard must know of this app: where a path names its tenant. */
export const guardOptions = {
  routes: ['/t/:namespace{/*rest}'],
  allowlist: [],
};

/**
 * The app, behind `guard`, or behind a guard made here on `store`. `express` is the module to
 * build it with (the tests run it on Express 4 and 5); `searchUp` says whether the search index
 * answers.
 */
export function createApp({
  guard,
  store,
  express: expressModule = express,
  searchUp = () => true,
}) {
  const app = expressModule();
  app.use(guard ?? namespaceReadOnly({ ...guardOptions, store }));
  app.use(expressModule.json());

  const notes = new Map(); // tenant -> [{ id, text }]
  const of = (tenant) => notes.get(tenant.toLowerCase()) ?? [];

  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });

  app.get('/t/:tenant/notes', (req, res) => {
    res.json(of(req.params.tenant));
  });

  app.post('/t/:tenant/notes', (req, res) => {
    const list = of(req.params.tenant);
    const note = { id: list.length + 1, text: String(req.body?.text ?? '') };
    notes.set(req.params.tenant.toLowerCase(), [...list, note]);
    res.status(201).json(note);
  });

  // The app's own 503: it looks like a maintenance refusal, and is not one.
  app.post('/t/:tenant/search/reindex', (_req, res) => {
    if (!searchUp()) {
      res.status(503).set('Retry-After', '30').json({ error: 'the search index is down' });
      return;
    }
    res.status(202).json({ queued: true });
  });

  return app;
}
