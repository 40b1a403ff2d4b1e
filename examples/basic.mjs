#!/usr/bin/env node
// The smallest real app: the guard in front of a couple of GitLab-shaped routes.
//
//   node examples/basic.mjs                      listens on http://127.0.0.1:3000
//   PORT=0 node examples/basic.mjs               ... on a free port
//   READ_ONLY=acme node examples/basic.mjs       ... with acme in maintenance from the start
//   EXIT_AFTER_SECONDS=5 node examples/basic.mjs ... and stops by itself after 5 seconds
//
// Then:
//   curl -i -X POST http://127.0.0.1:3000/acme/proj/-/issues   (201, or 503 when acme is read-only)
//   curl -i http://127.0.0.1:3000/acme/proj                    (200: reads always pass)
//
// Needs the built package (`npm run build`).

import express from 'express';
import { namespaceReadOnly } from 'namespace-read-only';

// In-memory store, GitLab's path grammar and allowlist. It logs JSON lines to stderr, at `warn`:
// only what needs an operator (here, once at start, that no `resolveId` maps numeric API ids).
const guard = namespaceReadOnly();

const app = express();
app.use(guard); // before body parsers and routes: a refused write is never read
app.use(express.json());

app.get('/:ns/:project', (req, res) => {
  res.json({ full_path: `${req.params.ns}/${req.params.project}` });
});

app.post('/:ns/:project/-/issues', (req, res) => {
  res
    .status(201)
    .json({ project: `${req.params.ns}/${req.params.project}`, title: req.body?.title });
});

// Flip namespaces from code: `guard.store` is the store the guard reads.
for (const namespace of (process.env.READ_ONLY ?? '').split(',').filter(Boolean)) {
  await guard.store.set(namespace.trim(), 'maintenance');
}

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const server = app.listen(port, host, () => {
  const { port: actual } = server.address();
  console.log(`listening on http://${host}:${actual}`);
  if (process.env.READ_ONLY) console.log(`read-only: ${process.env.READ_ONLY}`);
});
server.on('error', (error) => {
  console.error(`cannot listen on ${host}:${port}: ${error.message}`);
  process.exit(1);
});

const exitAfter = Number(process.env.EXIT_AFTER_SECONDS ?? 0);
if (exitAfter > 0) {
  setTimeout(() => {
    console.log(`EXIT_AFTER_SECONDS=${exitAfter}: stopping`);
    server.close();
    server.closeAllConnections();
  }, exitAfter * 1000).unref();
}
