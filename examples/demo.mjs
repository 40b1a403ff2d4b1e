#!/usr/bin/env node
// A scripted walk-through of namespace-read-only on the in-memory store.
//
//   node examples/demo.mjs               the walk-through; exit code 1 if any step differs
//   node examples/demo.mjs --serve       ... then keep the server up and print curl commands
//   node examples/demo.mjs --port 3000   ... the same, on a port of your choice
//
// Needs the built package (`npm run build`); `npm run demo` builds it first when needed.
// The app is a stand-in for GitLab: a few GitLab-shaped routes behind the guard.

import express from 'express';
import { gitlabAllowlist, MemoryStateStore, namespaceReadOnly } from 'namespace-read-only';

const HELP = `Usage: node examples/demo.mjs [--serve] [--port N]

  (no flags)   run the walk-through and exit (1 if a step is not what it should be)
  --serve      keep the server up afterwards on a free port and print curl commands
  --port N     keep the server up afterwards on port N (implies --serve)`;

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const options = { serve: false, port: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--serve') {
      options.serve = true;
    } else if (arg === '--port' || arg.startsWith('--port=')) {
      const value = arg === '--port' ? argv[++i] : arg.slice('--port='.length);
      const port = Number(value);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new Error(`--port needs a port number (0-65535); received ${value}`);
      }
      options.serve = true;
      options.port = port;
    } else if (arg === '--help' || arg === '-h') {
      console.log(HELP);
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${arg}\n\n${HELP}`);
    }
  }
  return options;
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (error) {
  console.error(error.message);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// The app

const store = new MemoryStateStore();

// In --serve mode the guard's decisions are printed, so you can watch it work.
const quiet = { warn() {}, info() {}, debug() {}, error() {} };
// Refused, bypassed and reported writes are `info` (expected during a maintenance); `warn` is
// for what an operator must act on.
const decision = (o, m) =>
  console.log(`  [guard] ${m}: ${o.method} ${o.path} (${o.reason}, ${o.namespace})`);
const talkative = {
  warn: decision,
  info: decision,
  debug: (o, m) => console.log(`  [guard] ${m}: ${o.method} ${o.path} (rule ${o.rule})`),
  error: (o, m) => console.log(`  [guard] ${m}${o.err ? `: ${o.err}` : ''}`),
};
let logger = quiet;

const guard = namespaceReadOnly({
  store,
  // GitLab's allowlist plus the demo's own switch, so that it also works while the whole
  // instance (`*`) is read-only. A namespace in maintenance never blocks it anyway: in GitLab's
  // grammar `-` is a reserved word, so `/-/demo/...` names no namespace.
  allowlist: [
    ...gitlabAllowlist(),
    { method: ['POST', 'DELETE'], path: '/-/demo/maintenance/:ns' },
  ],
  logger: {
    warn: (o, m) => logger.warn(o, m),
    info: (o, m) => logger.info(o, m),
    debug: (o, m) => logger.debug(o, m),
    error: (o, m) => logger.error(o, m),
  },
});

const app = express();
app.use(guard); // first: a blocked write is answered before anything reads its body
app.use(express.json());

let nextIid = 1;
let handled = 0; // requests that reached a handler behind the guard

app.use((_req, _res, next) => {
  handled += 1;
  next();
});

app.get('/:ns/:project', (req, res) => {
  res.json({ full_path: `${req.params.ns}/${req.params.project}` });
});

app.post('/:ns/:project/-/issues', (req, res) => {
  const title = typeof req.body?.title === 'string' ? req.body.title : 'Untitled';
  res
    .status(201)
    .json({ iid: nextIid++, title, project: `${req.params.ns}/${req.params.project}` });
});

// git fetch: a POST that writes nothing (GitLab's allowlist lets it through).
app.post('/:ns/:project.git/git-upload-pack', (_req, res) => {
  res.type('application/x-git-upload-pack-result').send('0008NAK\n');
});

// git push: a real write.
app.post('/:ns/:project.git/git-receive-pack', (_req, res) => {
  res.type('application/x-git-receive-pack-result').send('0000');
});

// The demo's switch. No authentication: a demo only, never copy this into a real app as is.
app.get('/-/demo/maintenance/:ns', async (req, res) => {
  res.json({ namespace: req.params.ns, state: await store.get(req.params.ns) });
});
app.post('/-/demo/maintenance/:ns', async (req, res) => {
  const minutes = Number(req.body?.minutes ?? 10);
  const state = {
    state: 'maintenance',
    message: typeof req.body?.message === 'string' ? req.body.message : undefined,
    until:
      Number.isFinite(minutes) && minutes > 0 ? new Date(Date.now() + minutes * 60_000) : undefined,
  };
  await store.set(req.params.ns, state);
  res.json({ namespace: req.params.ns, state: await store.get(req.params.ns) });
});
app.delete('/-/demo/maintenance/:ns', async (req, res) => {
  await store.delete(req.params.ns);
  res.json({ namespace: req.params.ns, state: null });
});

app.use((error, _req, res, _next) => {
  // store.set() and store.get() throw a TypeError for a name no request could resolve to.
  const status = error instanceof TypeError ? 400 : (error.status ?? 500);
  res.status(status).json({ message: error.message });
});

// ---------------------------------------------------------------------------------------------
// The walk-through

const server = app.listen(args.port, '127.0.0.1');
await new Promise((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
}).catch((error) => {
  console.error(`cannot listen on 127.0.0.1:${args.port}: ${error.message}`);
  process.exit(1);
});
const base = `http://127.0.0.1:${server.address().port}`;

const json = { 'content-type': 'application/json', accept: 'application/json' };
const issue = (title) => ({ method: 'POST', headers: json, body: JSON.stringify({ title }) });
const gitFetch = {
  method: 'POST',
  headers: { 'content-type': 'application/x-git-upload-pack-request' },
  body: '0000',
};
const gitPush = {
  method: 'POST',
  headers: { 'content-type': 'application/x-git-receive-pack-request' },
  body: '0000',
};

/**
 * Each step is either an action on the store (`act`) or a request with the status it must get.
 * `blockedBy` is the X-Namespace-Read-Only value a 503 must carry.
 */
const steps = [
  { section: 'acme and beta are writable' },
  { path: '/acme/proj', init: { method: 'GET' }, expect: 200, note: 'a read' },
  { path: '/acme/proj/-/issues', init: issue('First'), expect: 201, note: 'a write' },

  { section: 'acme enters maintenance' },
  {
    act: "store.set('acme', { state: 'maintenance', … })",
    run: () =>
      store.set('acme', {
        state: 'maintenance',
        message: 'Moving acme to a new region',
        until: new Date(Date.now() + 10 * 60_000),
      }),
  },
  {
    path: '/acme/proj/-/issues',
    init: issue('Second'),
    expect: 503,
    blockedBy: 'acme',
    note: 'the write is refused; the handler never runs',
  },
  { path: '/acme/proj', init: { method: 'GET' }, expect: 200, note: 'reads still pass' },
  {
    path: '/beta/proj/-/issues',
    init: issue('Elsewhere'),
    expect: 201,
    note: 'other namespaces are untouched',
  },
  {
    path: '/acme/proj.git/git-upload-pack',
    init: gitFetch,
    expect: 200,
    note: 'git fetch is allowlisted',
  },
  {
    path: '/acme/proj.git/git-receive-pack',
    init: gitPush,
    expect: 503,
    blockedBy: 'acme',
    note: 'git push is a write',
  },

  { section: 'acme leaves maintenance' },
  { act: "store.delete('acme')", run: () => store.delete('acme') },
  { path: '/acme/proj/-/issues', init: issue('Third'), expect: 201, note: 'writable again' },

  { section: 'the HTTP switch used by --serve (`/-/...` names no namespace)' },
  {
    path: '/-/demo/maintenance/acme',
    init: { method: 'POST', headers: json, body: JSON.stringify({ message: 'Back soon' }) },
    expect: 200,
    note: 'acme enters maintenance over HTTP',
  },
  {
    path: '/acme/proj/-/issues',
    init: issue('Fourth'),
    expect: 503,
    blockedBy: 'acme',
    note: 'refused',
  },
  {
    path: '/-/demo/maintenance/acme',
    init: { method: 'DELETE' },
    expect: 200,
    note: 'the switch itself is not blocked',
  },
  { path: '/acme/proj/-/issues', init: issue('Fifth'), expect: 201, note: 'writable again' },
];

/** Performs one request and describes the answer for the table. */
async function perform(step) {
  const method = step.init.method ?? 'GET';
  const handledBefore = handled;
  const res = await fetch(base + step.path, step.init);
  const body = await res.text();
  const retryAfter = res.headers.get('retry-after');
  const blockedBy = res.headers.get('x-namespace-read-only');
  const notes = [step.note];
  if (retryAfter !== null) notes.push(`Retry-After: ${retryAfter}`);
  if (blockedBy !== null) notes.push(`X-Namespace-Read-Only: ${blockedBy}`);
  if (res.status === 503) {
    try {
      notes.push(`"${JSON.parse(body).message}"`);
    } catch {
      notes.push(`"${body.trim().split('\n')[0]}"`);
    }
  }
  const problems = [];
  if (res.status !== step.expect) problems.push(`expected ${step.expect}`);
  if (step.blockedBy !== undefined) {
    if (blockedBy !== step.blockedBy)
      problems.push(`expected X-Namespace-Read-Only ${step.blockedBy}`);
    const seconds = Number(retryAfter);
    if (!Number.isInteger(seconds) || seconds < 1) problems.push('expected a Retry-After');
    if (handled !== handledBefore) problems.push('the handler ran');
  }
  return { request: `${method} ${step.path}`, status: String(res.status), notes, problems };
}

const rows = [];
let failures = 0;
let number = 0;
for (const step of steps) {
  if (step.section !== undefined) {
    rows.push({ section: step.section });
    continue;
  }
  number += 1;
  if (step.act !== undefined) {
    await step.run();
    rows.push({ step: String(number), request: step.act, status: '-', note: '' });
    continue;
  }
  let result;
  try {
    result = await perform(step);
  } catch (error) {
    result = { request: step.path, status: 'error', notes: [], problems: [error.message] };
  }
  if (result.problems.length > 0) failures += 1;
  rows.push({
    step: String(number),
    request: result.request,
    status: result.status,
    note: [...result.notes, ...result.problems.map((p) => `MISMATCH: ${p}`)].join('; '),
    bad: result.problems.length > 0,
  });
}

printTable(rows);
console.log();
if (failures > 0) {
  console.log(`${failures} step(s) did not answer as expected.`);
} else {
  console.log('Every step answered as expected.');
}

// ---------------------------------------------------------------------------------------------
// --serve: keep going for a person with curl

if (!args.serve || failures > 0) {
  server.closeAllConnections();
  server.close();
  process.exitCode = failures > 0 ? 1 : 0;
} else {
  await store.delete('acme');
  logger = talkative;
  printCurlCommands(base);
  const stop = () => {
    console.log('\nstopping');
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

// ---------------------------------------------------------------------------------------------
// Output

function printTable(rows) {
  const headers = { step: 'step', request: 'request', status: 'status', note: 'note' };
  const plain = rows.filter((r) => r.section === undefined);
  const width = (key) => Math.max(headers[key].length, ...plain.map((r) => r[key].length));
  const w = { step: width('step'), request: width('request'), status: width('status') };
  const line = (r) =>
    `${r.step.padStart(w.step)}  ${r.request.padEnd(w.request)}  ${r.status.padEnd(w.status)}  ${r.note}`.trimEnd();
  console.log(`namespace-read-only demo, app at ${base}\n`);
  console.log(line(headers));
  console.log(
    line({
      step: '-'.repeat(w.step),
      request: '-'.repeat(w.request),
      status: '-'.repeat(w.status),
      note: '----',
    }),
  );
  for (const r of rows) {
    if (r.section !== undefined) {
      console.log(`${' '.repeat(w.step)}  -- ${r.section}`);
    } else {
      console.log(line(r) + (r.bad ? '   <-- !' : ''));
    }
  }
}

function printCurlCommands(base) {
  const ns = `${base}/-/demo/maintenance`;
  console.log(`
The server keeps running at ${base} (Ctrl-C to stop). acme is writable again. Try:

  # a read and a write
  curl -i ${base}/acme/proj
  curl -i -X POST -H 'content-type: application/json' -d '{"title":"Hello"}' ${base}/acme/proj/-/issues

  # put acme into maintenance (message and minutes are optional; minutes sets Retry-After)
  curl -i -X POST -H 'content-type: application/json' \\
       -d '{"message":"Moving acme to a new region","minutes":10}' ${ns}/acme
  curl -i ${ns}/acme

  # writes to acme are refused now: JSON, an HTML page or plain text, whichever the client reads
  curl -i -X POST -H 'content-type: application/json' -d '{"title":"Hello"}' ${base}/acme/proj/-/issues
  curl -i -X POST -H 'accept: text/html' ${base}/acme/proj/-/issues
  curl -i -X POST ${base}/acme/proj.git/git-receive-pack
  # ... while reads, git fetch and other namespaces still work
  curl -i ${base}/acme/proj
  curl -i -X POST ${base}/acme/proj.git/git-upload-pack
  curl -i -X POST ${base}/beta/proj/-/issues

  # acme leaves maintenance
  curl -i -X DELETE ${ns}/acme

  # the whole instance: every namespace is read-only, and so is every write naming none
  curl -i -X POST ${ns}/'*'
  curl -i -X POST ${base}/beta/proj/-/issues
  curl -i -X DELETE ${ns}/'*'
`);
}
