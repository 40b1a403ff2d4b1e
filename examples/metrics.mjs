#!/usr/bin/env node
// The guard with Prometheus metrics: a prom-client registry, the guard's `metrics` option, and
// /metrics for Prometheus to scrape (docs/observability.md lists what is there).
//
//   node examples/metrics.mjs                    listens on http://127.0.0.1:3000
//   PORT=0 node examples/metrics.mjs             ... on a free port
//   READ_ONLY=acme node examples/metrics.mjs     ... with acme in maintenance, and a bypass token
//                                                    for it printed at start
//
// Then:
//   curl -i -X POST http://127.0.0.1:3000/acme/proj/-/issues      (503 while acme is read-only)
//   curl -i -X POST http://127.0.0.1:3000/beta/proj/-/issues      (201)
//   curl -i -X POST -H 'X-Namespace-Read-Only-Bypass: <token>' \
//        http://127.0.0.1:3000/acme/proj/-/issues                  (201: bypassed)
//   curl http://127.0.0.1:3000/metrics                             (nsro_decisions_total...)
//
// Needs the built package (`npm run build`) and prom-client (`npm install prom-client`).

import { randomBytes } from 'node:crypto';
import express from 'express';
import { createBypassToken, namespaceReadOnly } from 'namespace-read-only';
import { collectDefaultMetrics, Registry } from 'prom-client';

const registry = new Registry();
collectDefaultMetrics({ register: registry }); // the process's own metrics, beside the guard's

// A real deployment keeps the secret where its other secrets are; this one is made up at start.
const secret = process.env.BYPASS_SECRET ?? randomBytes(32).toString('base64url');
const guard = namespaceReadOnly({ metrics: { registry }, bypass: { secret } });

const app = express();
// Before the guard: a scrape is a read, which the guard lets through anyway, but it has no
// business with namespaces at all.
app.get('/metrics', (_req, res, next) => {
  registry.metrics().then((text) => {
    res.setHeader('Content-Type', registry.contentType);
    res.end(text);
  }, next);
});
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

for (const namespace of (process.env.READ_ONLY ?? '').split(',').filter(Boolean)) {
  await guard.store.set(namespace.trim(), 'maintenance');
  const token = createBypassToken({ secret, namespace: namespace.trim(), ttl: 3_600_000 });
  console.log(`bypass token for ${namespace.trim()}: ${token}`);
}

const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const server = app.listen(port, host, () => {
  const { port: actual } = server.address();
  console.log(`listening on http://${host}:${actual} (metrics on /metrics)`);
});
server.on('error', (error) => {
  console.error(`cannot listen on ${host}:${port}: ${error.message}`);
  process.exit(1);
});
