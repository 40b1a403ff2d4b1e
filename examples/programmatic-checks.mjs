#!/usr/bin/env node
// Writes a request path cannot reveal, closed with the guard's programmatic checks.
//
// The middleware decides from the path. Three kinds of write name their namespace somewhere else,
// so the middleware lets them through and the handler must ask the same guard:
//
//   POST /api/graphql                  a mutation names its target in the JSON body
//   POST /api/v4/projects              a new project's namespace is `namespace_id` in the body
//   POST /api/v4/internal/allowed      gitlab-shell asks whether an SSH push may proceed
//
//   node examples/programmatic-checks.mjs           serve on http://127.0.0.1:3000 (PORT to change)
//   node examples/programmatic-checks.mjs --check   exercise every case, exit 1 on a mismatch
//
// Needs the built package (`npm run build`).

import express from 'express';
import { MemoryStateStore, NamespaceReadOnlyError, namespaceReadOnly } from 'namespace-read-only';

// A stand-in for the application's database.
const NAMESPACES = new Map([
  ['1', 'acme'],
  ['2', 'beta'],
  ['3', 'acme/team'],
]);
const PROJECTS = new Map([
  ['10', 'acme/proj'],
  ['11', 'acme/team/tools'],
  ['20', 'beta/app'],
]);

const store = new MemoryStateStore();
const guard = namespaceReadOnly({
  store,
  // Numeric ids in REST paths (`/api/v4/projects/10/issues`) resolve through the same tables.
  resolveId: (kind, id) => (kind === 'project' ? PROJECTS : NAMESPACES).get(id) ?? null,
});

/**
 * The programmatic check every handler below uses: `{ ok: true }` when `fullPath` may be written,
 * otherwise the reason as a NamespaceReadOnlyError. It fails closed like the middleware: a name
 * no request could resolve to (assertWritable throws a TypeError) and a store that cannot be read
 * refuse the write too.
 */
async function checkWritable(fullPath, req) {
  try {
    await guard.assertWritable(fullPath, req); // `req` shares the request's memoised read
    return { ok: true };
  } catch (error) {
    if (error instanceof NamespaceReadOnlyError) return { ok: false, error };
    console.error(`write to ${JSON.stringify(fullPath)} refused: ${error.message}`);
    return {
      ok: false,
      error: new NamespaceReadOnlyError(
        'The namespace this write targets could not be checked, so it was refused.',
        'invalid-namespace',
        null,
        60,
      ),
    };
  }
}

/** Answers like the middleware does: 503, Retry-After, X-Namespace-Read-Only, JSON body. */
function sendReadOnly(res, error) {
  res
    .status(error.status)
    .set('Retry-After', String(error.retryAfter))
    .set('Cache-Control', 'no-store')
    .set('X-Namespace-Read-Only', error.namespace ?? '?')
    .json({ message: error.message, namespace: error.namespace });
}

const app = express();
app.use(guard); // lets all three routes below through: two name no namespace, one is allowlisted
app.use(express.json());

// 1. GraphQL. GitLab's allowlist lets POST /api/graphql through, because a path cannot tell a
// query from a mutation. The mutation is refused inside GraphQL, with GitLab's error code.
app.post('/api/graphql', async (req, res) => {
  const { mutation, query, fullPath } = req.body ?? {};
  if (mutation === undefined) {
    // A query: reads are never refused.
    return res.json({ data: { project: { fullPath, query: query ?? null } } });
  }
  const check = await checkWritable(fullPath, req);
  if (!check.ok) {
    return res.json({
      data: { [mutation]: null },
      errors: [
        {
          message: check.error.message,
          path: [mutation],
          extensions: {
            code: check.error.code,
            reason: check.error.reason,
            namespace: check.error.namespace,
            retryAfter: check.error.retryAfter,
          },
        },
      ],
    });
  }
  res.json({ data: { [mutation]: { fullPath, errors: [] } } });
});

// 2. Project creation. `/api/v4/projects` names no namespace; the new project's does not appear
// until the body is read and `namespace_id` is looked up.
let nextProjectId = 100;
app.post('/api/v4/projects', async (req, res) => {
  const { name, namespace_id: namespaceId } = req.body ?? {};
  const namespace = NAMESPACES.get(String(namespaceId));
  if (namespace === undefined) return res.status(404).json({ message: '404 Namespace Not Found' });
  const check = await checkWritable(namespace, req);
  if (!check.ok) return sendReadOnly(res, check.error);
  const id = String(nextProjectId++);
  res.status(201).json({ id, path_with_namespace: `${namespace}/${name}` });
});

// 3. SSH push. gitlab-shell asks this endpoint before every git operation over SSH. The guard lets
// everything under /api/v4/internal through, so the endpoint itself refuses a push (an upload)
// into a read-only namespace. A fetch is a read and stays allowed.
app.post('/api/v4/internal/allowed', async (req, res) => {
  const { action, project, gl_repository: glRepository } = req.body ?? {};
  const fullPath = projectPath(project, glRepository);
  if (fullPath === null) return res.status(404).json({ status: false, message: 'Not found' });
  if (action === 'git-receive-pack') {
    const check = await checkWritable(fullPath, req);
    // GitLab answers a refused git access with 401; gitlab-shell shows `message` to the user.
    if (!check.ok) return res.status(401).json({ status: false, message: check.error.message });
  }
  res.json({ status: true, gl_repository: `project-${projectId(fullPath)}` });
});

/** `project` is a path like `/acme/proj.git`; `gl_repository` is like `project-10`. */
function projectPath(project, glRepository) {
  if (typeof glRepository === 'string' && glRepository.startsWith('project-')) {
    return PROJECTS.get(glRepository.slice('project-'.length)) ?? null;
  }
  if (typeof project !== 'string') return null;
  const path = project.replace(/^\/+/, '').replace(/\.git$/, '');
  return [...PROJECTS.values()].includes(path) ? path : null;
}

function projectId(fullPath) {
  for (const [id, path] of PROJECTS) if (path === fullPath) return id;
  return null;
}

// Any other REST write: the middleware attributes `/api/v4/projects/:id/...` itself, via resolveId.
app.post('/api/v4/projects/:id/issues', (req, res) => {
  res.status(201).json({ project_id: req.params.id, title: req.body?.title ?? null });
});

// ---------------------------------------------------------------------------------------------

const checking = process.argv.includes('--check');
const port = checking ? 0 : Number(process.env.PORT ?? 3000);
const server = app.listen(port, '127.0.0.1');
await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
}).catch((error) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${error.message}`);
  process.exit(1);
});
const base = `http://127.0.0.1:${server.address().port}`;

if (checking) {
  const failures = await selfCheck();
  server.closeAllConnections();
  server.close();
  process.exitCode = failures > 0 ? 1 : 0;
} else {
  await store.set('acme', { state: 'maintenance', message: 'Moving acme to a new region' });
  console.log(`listening on ${base}; acme is in maintenance, beta is writable. Try:

  curl -s -X POST -H 'content-type: application/json' \\
       -d '{"mutation":"createIssue","fullPath":"acme/proj"}' ${base}/api/graphql
  curl -i -X POST -H 'content-type: application/json' \\
       -d '{"name":"new","namespace_id":1}' ${base}/api/v4/projects
  curl -i -X POST -H 'content-type: application/json' \\
       -d '{"action":"git-receive-pack","project":"/acme/proj.git","protocol":"ssh"}' ${base}/api/v4/internal/allowed

  (use "beta/app", namespace_id 2 or "/beta/app.git" to see them succeed)`);
}

// ---------------------------------------------------------------------------------------------
// --check

async function selfCheck() {
  const post = async (path, body) => {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, headers: res.headers, json };
  };
  const graphqlRefused = (code) => (r) =>
    r.status === 200 && r.json?.errors?.[0]?.extensions?.code === code;
  const graphqlDone = (r) => r.status === 200 && r.json?.errors === undefined && r.json?.data;
  const blockedBy = (namespace) => (r) =>
    r.status === 503 &&
    r.headers.get('x-namespace-read-only') === namespace &&
    Number(r.headers.get('retry-after')) > 0;
  const status = (code) => (r) => r.status === code;
  const allowed = (r) => r.status === 200 && r.json?.status === true;
  const denied = (r) => r.status === 401 && r.json?.status === false;

  const createIssue = (fullPath) => ({ mutation: 'createIssue', fullPath });
  const push = (project) => ({ action: 'git-receive-pack', project, protocol: 'ssh' });
  const fetchRepo = (project) => ({ action: 'git-upload-pack', project, protocol: 'ssh' });

  const steps = [
    ['every namespace writable'],
    [
      'GraphQL createIssue acme/proj',
      '/api/graphql',
      createIssue('acme/proj'),
      graphqlDone,
      'data',
    ],
    [
      'POST /api/v4/projects namespace_id=1',
      '/api/v4/projects',
      { name: 'a', namespace_id: 1 },
      status(201),
      '201',
    ],
    [
      'SSH push /acme/proj.git',
      '/api/v4/internal/allowed',
      push('/acme/proj.git'),
      allowed,
      'status: true',
    ],
    [
      "store.set('acme', maintenance)",
      () => store.set('acme', { state: 'maintenance', message: 'Moving acme' }),
    ],
    [
      'GraphQL createIssue acme/proj',
      '/api/graphql',
      createIssue('acme/proj'),
      graphqlRefused('ERR_NSRO_MAINTENANCE'),
      'ERR_NSRO_MAINTENANCE',
    ],
    [
      'GraphQL createIssue ACME/team/tools',
      '/api/graphql',
      createIssue('ACME/team/tools'),
      graphqlRefused('ERR_NSRO_MAINTENANCE'),
      'ERR_NSRO_MAINTENANCE',
    ],
    ['GraphQL createIssue beta/app', '/api/graphql', createIssue('beta/app'), graphqlDone, 'data'],
    [
      'GraphQL query acme/proj',
      '/api/graphql',
      { query: 'project', fullPath: 'acme/proj' },
      graphqlDone,
      'data (a read)',
    ],
    [
      'GraphQL createIssue "a b/c" (no valid name)',
      '/api/graphql',
      createIssue('a b/c'),
      graphqlRefused('ERR_NSRO_INVALID_NAMESPACE'),
      'refused (fails closed)',
    ],
    [
      'POST /api/v4/projects namespace_id=1 (acme)',
      '/api/v4/projects',
      { name: 'b', namespace_id: 1 },
      blockedBy('acme'),
      '503 acme',
    ],
    [
      'POST /api/v4/projects namespace_id=3 (acme/team)',
      '/api/v4/projects',
      { name: 'c', namespace_id: 3 },
      blockedBy('acme'),
      '503 acme',
    ],
    [
      'POST /api/v4/projects namespace_id=2 (beta)',
      '/api/v4/projects',
      { name: 'd', namespace_id: 2 },
      status(201),
      '201',
    ],
    [
      'POST /api/v4/projects namespace_id=99',
      '/api/v4/projects',
      { name: 'e', namespace_id: 99 },
      status(404),
      '404',
    ],
    [
      'SSH push /acme/proj.git',
      '/api/v4/internal/allowed',
      push('/acme/proj.git'),
      denied,
      '401 status: false',
    ],
    [
      'SSH push gl_repository=project-11',
      '/api/v4/internal/allowed',
      { action: 'git-receive-pack', gl_repository: 'project-11' },
      denied,
      '401 status: false',
    ],
    [
      'SSH fetch /acme/proj.git',
      '/api/v4/internal/allowed',
      fetchRepo('/acme/proj.git'),
      allowed,
      'status: true (a read)',
    ],
    [
      'SSH push /beta/app.git',
      '/api/v4/internal/allowed',
      push('/beta/app.git'),
      allowed,
      'status: true',
    ],
    [
      'REST POST /api/v4/projects/10/issues',
      '/api/v4/projects/10/issues',
      { title: 'x' },
      blockedBy('acme'),
      '503 acme (middleware, via resolveId)',
    ],
    [
      'REST POST /api/v4/projects/20/issues',
      '/api/v4/projects/20/issues',
      { title: 'x' },
      status(201),
      '201',
    ],
    [
      "store.delete('acme'); store.set('*', maintenance)",
      async () => {
        await store.delete('acme');
        await store.set('*', 'maintenance');
      },
    ],
    [
      'GraphQL createIssue beta/app',
      '/api/graphql',
      createIssue('beta/app'),
      graphqlRefused('ERR_NSRO_INSTANCE_MAINTENANCE'),
      'ERR_NSRO_INSTANCE_MAINTENANCE',
    ],
    [
      'SSH push /beta/app.git',
      '/api/v4/internal/allowed',
      push('/beta/app.git'),
      denied,
      '401 (the endpoint itself is allowlisted)',
    ],
    [
      'POST /api/v4/projects namespace_id=2',
      '/api/v4/projects',
      { name: 'f', namespace_id: 2 },
      blockedBy('*'),
      '503 * (the middleware: a path naming no namespace)',
    ],
    ["store.delete('*')", () => store.delete('*')],
    [
      'GraphQL createIssue acme/proj',
      '/api/graphql',
      createIssue('acme/proj'),
      graphqlDone,
      'data',
    ],
    [
      'SSH push /acme/proj.git',
      '/api/v4/internal/allowed',
      push('/acme/proj.git'),
      allowed,
      'status: true',
    ],
  ];

  const rows = [];
  let failures = 0;
  for (const [label, path, body, ok, expected] of steps) {
    if (path === undefined) {
      rows.push([`-- ${label}`]);
    } else if (typeof path === 'function') {
      await path();
      rows.push([`-- ${label}`]);
    } else {
      const r = await post(path, body);
      const pass = ok(r);
      if (!pass) failures += 1;
      const detail =
        r.json?.errors?.[0]?.extensions?.code ??
        r.headers.get('x-namespace-read-only') ??
        (r.json?.status !== undefined ? `status: ${r.json.status}` : '');
      rows.push([label, `${r.status} ${detail}`.trim(), expected, pass ? 'ok' : 'MISMATCH']);
    }
  }

  const widths = [0, 1, 2].map((i) =>
    Math.max(...rows.filter((r) => r.length > 1).map((r) => r[i].length)),
  );
  console.log(`programmatic checks, app at ${base}\n`);
  console.log(
    [
      'case'.padEnd(widths[0]),
      'got'.padEnd(widths[1]),
      'expected'.padEnd(widths[2]),
      'result',
    ].join('  '),
  );
  for (const row of rows) {
    if (row.length === 1) console.log(row[0]);
    else console.log(row.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]) : cell)).join('  '));
  }
  console.log(
    failures === 0 ? '\nEvery case answered as expected.' : `\n${failures} case(s) did not.`,
  );
  return failures;
}
