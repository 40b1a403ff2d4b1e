#!/usr/bin/env node
// Consumer smoke test: packs the package as npm would publish it, installs the tarball into a
// throwaway project together with express@5, and checks that it works from ESM, from CommonJS and
// from TypeScript (module/moduleResolution nodenext). Also runs publint and
// @arethetypeswrong/cli on the same tarball.
//
// Needs `npm run build` first. Plain Node ESM with builtins only.
// Run alone: `node scripts/consumer-smoke.mjs` (set NSRO_KEEP_CONSUMER=1 to keep the temp dir).
// scripts/test.mjs imports runConsumerSmoke() and counts its checks as tests.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

const EXPORTS = [
  'namespaceReadOnly',
  'MemoryStateStore',
  'RedisStateStore',
  'gitlabRoutes',
  'gitlabAllowlist',
  'NamespaceReadOnlyError',
  'createBypassToken',
];
const BUILD_OUTPUTS = [
  'dist/index.js',
  'dist/index.cjs',
  'dist/index.d.ts',
  'dist/index.d.cts',
  'dist/testing.js',
  'dist/testing.cjs',
  'dist/testing.d.ts',
  'dist/testing.d.cts',
];

/** Runs a command without stdin; returns { ok, stdout, out } (out: stdout and stderr together). */
function run(cmd, args, cwd, timeout = 180_000) {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout,
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
  const stdout = r.stdout ?? '';
  const out = `${stdout}${r.stderr ?? ''}`.trim();
  if (r.error) return { ok: false, stdout, out: `${out}\n${r.error.message}`.trim() };
  const ok = r.status === 0;
  return { ok, stdout, out: ok ? out : `${out}\n(exit code ${r.status})`.trim() };
}

/**
 * The runtime check, shared by the ESM and the CJS consumer; `lib` (the main entry), `testing`
 * (`namespace-read-only/testing`) and `express` are in scope.
 */
const RUNTIME_CHECK = `
const expected = ${JSON.stringify(EXPORTS)};
for (const name of expected) {
  if (typeof lib[name] !== 'function') {
    throw new Error(\`export \${name}: expected a function, got \${typeof lib[name]}\`);
  }
}
if (!(lib.NamespaceReadOnlyError.prototype instanceof Error)) {
  throw new Error('NamespaceReadOnlyError does not extend Error');
}
// The testing entry imports the main one by name: one copy of each class between them.
if (testing.MemoryStateStore !== lib.MemoryStateStore) {
  throw new Error('namespace-read-only/testing has its own MemoryStateStore');
}

function send(port, method, path) {
  return new Promise((resolve, reject) => {
    const body = method === 'GET' ? '' : '{"title":"x"}';
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: {
          connection: 'close',
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(\`\${method} \${path} timed out\`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const testGuard = testing.createTestGuard();
  await testGuard.enable('acme');
  if (!(testGuard.store instanceof lib.MemoryStateStore) || !(await testGuard.isReadOnly('acme'))) {
    throw new Error('createTestGuard: enable did not reach its guard');
  }
  const store = new lib.MemoryStateStore();
  await store.set('acme', 'maintenance');
  let handlerRan = 0;
  const app = express();
  app.use(lib.namespaceReadOnly({ store }));
  app.all('/acme/proj/-/issues', (_req, res) => {
    handlerRan += 1;
    res.status(200).send('handler');
  });
  const server = http.createServer(app);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  try {
    const post = await send(port, 'POST', '/acme/proj/-/issues');
    if (post.status !== 503) throw new Error(\`POST in maintenance: expected 503, got \${post.status}\`);
    if (handlerRan !== 0) throw new Error('POST in maintenance: the route handler ran');
    const header = post.headers['x-namespace-read-only'];
    if (header !== 'acme') throw new Error(\`X-Namespace-Read-Only: expected acme, got \${header}\`);
    const get = await send(port, 'GET', '/acme/proj/-/issues');
    if (get.status !== 200) throw new Error(\`GET in maintenance: expected 200, got \${get.status}\`);
    // The testing entry's helpers read a response as plain { status, headers }.
    testing.expectRefusedByGuard({ status: post.status, headers: post.headers }, { namespace: 'acme' });
    testing.expectNotRefusedByGuard({ status: get.status, headers: get.headers });
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

main().then(
  () => console.log(\`\${FLAVOUR}: ok\`),
  (err) => {
    console.error(\`\${FLAVOUR}: \${err && err.stack ? err.stack : err}\`);
    process.exitCode = 1;
  },
);
`;

const ESM_FILE = `import * as http from 'node:http';
import express from 'express';
import {
  ${EXPORTS.join(',\n  ')},
} from 'namespace-read-only';
import * as testing from 'namespace-read-only/testing';
const FLAVOUR = 'esm';
const lib = { ${EXPORTS.join(', ')} };
${RUNTIME_CHECK}`;

const CJS_FILE = `'use strict';
const FLAVOUR = 'cjs';
const http = require('node:http');
const express = require('express');
const lib = require('namespace-read-only');
const testing = require('namespace-read-only/testing');
${RUNTIME_CHECK}`;

// Type-level use of the public contract (see shared/reference/contract.md), as an ESM consumer.
const MTS_FILE = `import express from 'express';
import type { Request, Response } from 'express';
import type { Request as Request4, Response as Response4 } from 'express4';
import {
  MemoryStateStore,
  NamespaceReadOnlyError,
  RedisStateStore,
  gitlabAllowlist,
  gitlabRoutes,
  namespaceReadOnly,
} from 'namespace-read-only';
import {
  createTestGuard,
  expectRefusedByGuard,
  type GuardRefusal,
  guardRefusal,
  type TestGuard,
} from 'namespace-read-only/testing';

const store = new MemoryStateStore();
const app = express();
app.use(namespaceReadOnly());
app.use(
  namespaceReadOnly({
    store,
    routes: gitlabRoutes(),
    allowlist: gitlabAllowlist(),
    relativeUrlRoot: '/gitlab',
    resolveId: (kind, id) => (kind === 'project' ? \`acme/\${id}\` : null),
    retryAfter: 600,
    onStoreError: 'open',
  }),
);

export async function exercise(): Promise<void> {
  await store.set('acme', 'maintenance');
  await store.set('acme', 'active');
  await store.set('acme', {
    state: 'maintenance',
    message: 'Moving to a new region',
    until: new Date(Date.now() + 600_000),
  });
  const state = await store.get('acme');
  if (state !== null) {
    const name: string = state.state;
    void [name, state.message, state.until];
  }
  await store.delete('acme');
}

export function describe(err: unknown): unknown[] {
  if (err instanceof NamespaceReadOnlyError) {
    const asError: Error = err;
    return [asError.message, err.status, err.namespace, err.retryAfter];
  }
  return [];
}

export const redisStoreClass: abstract new (...args: never[]) => unknown = RedisStateStore;

// Callbacks typed with Express's own Request and Response, 5 and 4: the options are generic.
app.use(
  namespaceReadOnly({
    skip: (req: Request) => req.path === '/health',
    canBypass: (req: Request, namespace) => req.get('x-admin') === namespace,
    handler: (_req: Request, res: Response, _next, info) => {
      res.json({ refused: info.namespace });
    },
  }),
);
// The testing entry: a guard the app mounts, and the helpers on a plain response.
export const testGuard: TestGuard = createTestGuard({
  skip: (req: Request) => req.path === '/health',
  statusFor: { archived: 403 },
});
app.use(testGuard);
export async function exerciseTesting(): Promise<GuardRefusal | null> {
  await testGuard.enable('acme', { state: 'maintenance', reason: 'archived' });
  const fromTestGuard: MemoryStateStore = testGuard.store;
  void fromTestGuard;
  const res = { status: 503, headers: { 'x-namespace-read-only': 'acme' } };
  expectRefusedByGuard(res, { namespace: 'acme', code: 'ERR_NSRO_MAINTENANCE', status: 503 });
  return guardRefusal(res);
}

export const express4Guard = namespaceReadOnly({
  skip: (req: Request4) => req.path === '/health',
  handler: (_req: Request4, res: Response4) => {
    res.send('read-only');
  },
});
`;

// The same package seen from a CommonJS TypeScript file (resolves the "require" types).
const CTS_FILE = `import express = require('express');
import nsro = require('namespace-read-only');

const store = new nsro.MemoryStateStore();
const app = express();
app.use(nsro.namespaceReadOnly({ store, routes: nsro.gitlabRoutes() }));
app.use(nsro.namespaceReadOnly({ skip: (req: express.Request) => req.path === '/health' }));
export const classes = [nsro.RedisStateStore, nsro.NamespaceReadOnlyError];

import testing = require('namespace-read-only/testing');
const testGuard = testing.createTestGuard();
app.use(testGuard);
export const refused: boolean = testing.isRefusedByGuard({ statusCode: 201, headers: {} });
export const sameStore: boolean = testGuard.store instanceof nsro.MemoryStateStore;
`;

const BULLMQ_CHECK = `
if (typeof bull.guardedProcessor !== 'function') throw new Error('guardedProcessor: not a function');
if (bull.NamespaceReadOnlyError !== main.NamespaceReadOnlyError) {
  throw new Error('the bullmq entry does not share the main entry\\'s classes');
}
const processor = bull.guardedProcessor(main.namespaceReadOnly({ logger: false }), {
  namespaceOf: (job) => job.data.namespace ?? null,
  processor: async () => 'done',
});
if (typeof processor !== 'function') throw new Error('guardedProcessor did not return a processor');
processor.close();
console.log(FLAVOUR + ': ok');
`;
const BULLMQ_ESM = `import * as main from 'namespace-read-only';
import * as bull from 'namespace-read-only/bullmq';
const FLAVOUR = 'bullmq esm';
${BULLMQ_CHECK}`;
const BULLMQ_CJS = `'use strict';
const main = require('namespace-read-only');
const bull = require('namespace-read-only/bullmq');
const FLAVOUR = 'bullmq cjs';
${BULLMQ_CHECK}`;
const BULLMQ_MTS = `import { type Job, Worker } from 'bullmq';
import { namespaceReadOnly } from 'namespace-read-only';
import { guardedProcessor } from 'namespace-read-only/bullmq';

interface IssueJob {
  namespace: string | null;
  title: string;
}
const processor = guardedProcessor(namespaceReadOnly(), {
  namespaceOf: (job: Job<IssueJob>) => job.data.namespace,
  processor: async (job: Job<IssueJob>) => job.data.title.length,
});
export const worker = (connection: { host: string; port: number }) =>
  new Worker('jobs', processor, { connection });
`;

/**
 * Runs every check. Returns [{ name, ok, detail }] for: pack, publint, attw, esm, cjs, types,
 * types-strict (skipLibCheck off, without ioredis), bullmq (the /bullmq entry, with bullmq).
 * Never throws for a failing check; a failing prerequisite fails the checks that need it.
 */
export function runConsumerSmoke({ log = console.log } = {}) {
  const results = [];
  const record = (name, ok, detail = '') => {
    results.push({ name, ok, detail });
    log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail && !ok ? `\n${indent(detail)}` : ''}`);
  };
  const failRest = (names, why) => {
    log(indent(why));
    for (const name of names) record(name, false, 'not run: a prerequisite failed (above)');
  };
  const ALL = ['pack', 'publint', 'attw', 'esm', 'cjs', 'types', 'types-strict', 'bullmq'];

  const missing = BUILD_OUTPUTS.filter((f) => !existsSync(join(root, f)));
  if (missing.length > 0) {
    failRest(ALL, `missing build output ${missing.join(', ')}: run \`npm run build\` first`);
    return results;
  }

  const tmp = mkdtempSync(join(tmpdir(), 'nsro-consumer-'));
  let keep = process.env.NSRO_KEEP_CONSUMER === '1';
  try {
    // 1. npm pack (scripts ignored: the build already ran, and stdout must stay pure JSON).
    const pack = run(
      'npm',
      ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp],
      root,
    );
    let tarball;
    let files = [];
    if (pack.ok) {
      try {
        const info = JSON.parse(pack.stdout)[0];
        tarball = join(tmp, info.filename);
        files = info.files.map((f) => f.path);
      } catch (err) {
        pack.ok = false;
        pack.out = `cannot read npm pack --json output: ${err.message}\n${pack.out}`;
      }
    }
    if (!pack.ok || !tarball || !existsSync(tarball)) {
      failRest(ALL, pack.out);
      keep = true;
      return results;
    }
    const required = ['package.json', 'LICENSE', ...BUILD_OUTPUTS];
    const absent = required.filter((f) => !files.includes(f));
    const stray = files.filter((f) => /^(src|test|scripts|\.ci|node_modules)\//.test(f));
    const docs = ['README.md', 'CHANGELOG.md'].filter((f) => !files.includes(f));
    if (docs.length > 0) log(`note: the tarball has no ${docs.join(', ')} yet`);
    record(
      'pack',
      absent.length === 0 && stray.length === 0,
      [
        absent.length > 0 ? `missing from the tarball: ${absent.join(', ')}` : '',
        stray.length > 0 ? `should not be published: ${stray.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join('\n'),
    );

    // 2. publint (--strict: errors and warnings fail; suggestions are only printed).
    const publint = run(bin('publint'), ['run', '--strict', tarball], root);
    record('publint', publint.ok, publint.out);
    if (publint.ok && publint.out) log(indent(publint.out));

    // 3. @arethetypeswrong/cli on the same tarball.
    const attw = run(
      bin('attw'),
      [tarball, '--format', 'ascii', '--no-definitely-typed', '--no-emoji', '--no-color'],
      root,
    );
    record('attw', attw.ok, attw.out);

    // 4. A consumer project with the tarball and express@5 (+ its types for the TS check).
    const app = join(tmp, 'consumer');
    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      `${JSON.stringify({ name: 'nsro-consumer', version: '0.0.0', private: true }, null, 2)}\n`,
    );
    const install = run(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--loglevel=error',
        tarball,
        'express@5',
        '@types/express@5',
        '@types/express4@npm:@types/express@4',
      ],
      app,
      300_000,
    );
    if (!install.ok) {
      failRest(
        ['esm', 'cjs', 'types', 'types-strict', 'bullmq'],
        `npm install in the consumer failed:\n${install.out}`,
      );
      keep = true;
      return results;
    }
    writeFileSync(join(app, 'esm.mjs'), ESM_FILE);
    writeFileSync(join(app, 'cjs.cjs'), CJS_FILE);
    writeFileSync(join(app, 'consumer.mts'), MTS_FILE);
    writeFileSync(join(app, 'consumer.cts'), CTS_FILE);

    for (const [name, file] of [
      ['esm', 'esm.mjs'],
      ['cjs', 'cjs.cjs'],
    ]) {
      const r = run(process.execPath, [file], app, 60_000);
      record(name, r.ok, r.out);
    }

    // 5. TypeScript consumer, with the repo's own compiler: as most projects compile
    //    (skipLibCheck on), and again with skipLibCheck off, which checks the published .d.ts
    //    files themselves — in a consumer that has not installed the optional peer ioredis.
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const tscArgs = [
      tsc,
      '--noEmit',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--strict',
      '--types',
      'node',
      'consumer.mts',
      'consumer.cts',
    ];
    const types = run(process.execPath, [...tscArgs, '--skipLibCheck'], app);
    record('types', types.ok, types.out);
    const ioredisInstalled = existsSync(join(app, 'node_modules', 'ioredis'));
    const strict = run(process.execPath, tscArgs, app);
    record(
      'types-strict',
      strict.ok && !ioredisInstalled,
      ioredisInstalled
        ? 'ioredis is installed in the consumer: the check means nothing'
        : strict.out,
    );

    // 6. The BullMQ entry, once its optional peer is installed: it loads from ESM and CommonJS,
    //    shares the main entry's classes, and its declarations compile (skipLibCheck off).
    const withBullmq = run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', 'bullmq@5'],
      app,
      300_000,
    );
    if (!withBullmq.ok) {
      record('bullmq', false, `npm install bullmq in the consumer failed:\n${withBullmq.out}`);
      return results;
    }
    writeFileSync(join(app, 'bullmq.mjs'), BULLMQ_ESM);
    writeFileSync(join(app, 'bullmq.cjs'), BULLMQ_CJS);
    writeFileSync(join(app, 'bullmq-consumer.mts'), BULLMQ_MTS);
    const checks = [
      run(process.execPath, ['bullmq.mjs'], app, 60_000),
      run(process.execPath, ['bullmq.cjs'], app, 60_000),
      run(process.execPath, [...tscArgs.slice(0, -2), 'bullmq-consumer.mts'], app),
    ];
    record(
      'bullmq',
      checks.every((c) => c.ok),
      checks
        .filter((c) => !c.ok)
        .map((c) => c.out)
        .join('\n'),
    );
    return results;
  } finally {
    if (results.some((r) => !r.ok)) keep = true;
    if (keep) log(`consumer project kept in ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

function indent(text) {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

/** The closing line for the esm/cjs/types trio, as the README and CI expect it. */
export function smokeSummary(results) {
  const trio = results.filter((r) => ['esm', 'cjs', 'types'].includes(r.name));
  const failed = trio.filter((r) => !r.ok).map((r) => r.name);
  return failed.length === 0 && trio.length === 3
    ? 'consumer smoke: ok (esm, cjs, types)'
    : `consumer smoke: FAILED (${failed.join(', ')})`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const results = runConsumerSmoke();
  console.log(smokeSummary(results));
  const others = results.filter((r) => !['esm', 'cjs', 'types'].includes(r.name));
  if (others.some((r) => !r.ok)) {
    console.log(`package checks FAILED: ${others.filter((r) => !r.ok).map((r) => r.name)}`);
  }
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}
