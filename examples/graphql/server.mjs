#!/usr/bin/env node
// GraphQL mutations behind the guard: the middleware lets `POST /api/graphql` through (it is on
// GitLab's allowlist), and each mutation checks the namespace it writes to (schema.mjs).
//
//   node examples/graphql/server.mjs                  listens on http://127.0.0.1:3000
//   PORT=0 node examples/graphql/server.mjs           ... on a free port
//   READ_ONLY=acme node examples/graphql/server.mjs   ... with acme in maintenance from the start
//
// Then:
//   curl -s http://127.0.0.1:3000/api/graphql -H 'content-type: application/json' \
//     -d '{"query":"mutation { createIssue(project: \"acme/proj\", title: \"Hi\") { id } }"}'
//   -> 200 {"errors":[{"message":"...","extensions":{"code":"ERR_NSRO_MAINTENANCE",...}}],...}
//      while acme is read-only; {"data":{"createIssue":{"id":"1"}}} otherwise
//   curl -s http://127.0.0.1:3000/api/graphql -H 'content-type: application/json' \
//     -d '{"query":"{ issues(project: \"acme/proj\") { id title } }"}'
//   -> queries always answer
//
// Needs the built package (`npm run build`).

import express from 'express';
import { namespaceReadOnly } from 'namespace-read-only';
import { graphqlHandler } from './schema.mjs';

const guard = namespaceReadOnly();

const app = express();
app.use(guard); // first, as always: it lets POST /api/graphql through, allowlisted
app.post('/api/graphql', graphqlHandler(guard));

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
