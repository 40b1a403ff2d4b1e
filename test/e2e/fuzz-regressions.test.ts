import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendRaw } from './fuzz/client.js';
import { requestBytes } from './fuzz/generators.js';
import {
  type Deployment,
  type Flavor,
  type Handled,
  startVictims,
  type Victims,
  type World,
} from './fuzz/victim.js';
import { MAINTENANCE } from './fuzz/world.js';

/**
 * One test per bypass class the differential fuzzer (test/fuzz/) found, replaying its shrunk
 * requests byte for byte against the same GitLab-shaped victim app, on both Express majors.
 * In this world `acme` (like every name in MAINTENANCE) is in maintenance, `open` is writable;
 * project id 1 is `acme/web`, project id 2 is `open/web`. The instance is in no state, except
 * for the victims of world `maintenance`, where it is in maintenance too.
 */

const FLAVORS: readonly Flavor[] = ['express 5', 'express 4'];
let victims: Victims;
let sequence = 0;

beforeAll(async () => {
  victims = await startVictims(FLAVORS, ['none', 'maintenance']);
});
afterAll(async () => {
  await victims?.close();
});

type Headers = readonly (readonly [string, string])[];

async function send(
  flavor: Flavor,
  method: string,
  target: string,
  headers: Headers = [],
  deployment: Deployment = 'top',
  world: World = 'none',
) {
  const id = `r${++sequence}`;
  const response = await sendRaw(
    victims.port(flavor, deployment, world),
    requestBytes(method, target, headers, id),
    10_000,
  );
  return { status: response.status, handled: victims.recorder.take(id) };
}

const closed = new Set(MAINTENANCE);
/**
 * Write handlers that ran for a namespace in maintenance (or, with the instance in maintenance,
 * for anything) outside the allowlisted routes.
 */
function breaches(handled: readonly Handled[], world: World = 'none'): Handled[] {
  return handled.filter(
    (h) =>
      h.write &&
      !h.allowlisted &&
      (world === 'maintenance' || h.namespaces.some((n) => closed.has(n))),
  );
}

/** The guard refuses the request with its 503, and no write handler ran. */
async function expectRefused(
  flavor: Flavor,
  method: string,
  target: string,
  headers: Headers = [],
  deployment: Deployment = 'top',
  world: World = 'none',
) {
  const { status, handled } = await send(flavor, method, target, headers, deployment, world);
  expect(breaches(handled, world), `${method} ${target}`).toEqual([]);
  expect(status, `${method} ${target}`).toBe(503);
}

/** The request reaches a handler (the fix does not block what it should not). */
async function expectServed(
  flavor: Flavor,
  method: string,
  target: string,
  headers: Headers = [],
  deployment: Deployment = 'top',
  world: World = 'none',
) {
  const { status, handled } = await send(flavor, method, target, headers, deployment, world);
  expect(status, `${method} ${target}`).toBe(200);
  expect(handled.length, `${method} ${target}`).toBe(1);
  return handled[0] as Handled;
}

describe.each(FLAVORS)('fuzz regressions (%s)', (flavor) => {
  it('query keys in bracket notation: `[_method]`, `%5B_method%5D`, `[service]` are what qs reads as `_method` and `service`', async () => {
    // qs (Express 4's query parser, Express 5's `extended` one) strips the brackets of a leading
    // `[key]`, so a read carrying `?[_method]=PUT` is a PUT to a method-override middleware.
    await expectRefused(flavor, 'GET', '/acme/web?[_method]=PUT');
    await expectRefused(flavor, 'OPTIONS', '/acme/web/-/issues?%5B_method%5D=Patch');
    await expectRefused(flavor, 'HEAD', '/acme/web?[_method][]=DELETE');
    await expectRefused(flavor, 'GET', '/acme/web.git/info/refs?[service]=git-receive-pack');
    await expectRefused(flavor, 'GET', '/acme/web.git/info/refs?%5Bservice%5D=git-receive-pack');
    // Reads that override nothing still pass.
    expect((await expectServed(flavor, 'GET', '/acme/web?[_method]=GET')).write).toBe(false);
    expect(
      (await expectServed(flavor, 'GET', '/acme/web.git/info/refs?[service]=git-upload-pack'))
        .write,
    ).toBe(false);
  });

  it('method override on allowlisted routes: the rule must allow every method the request can be routed as', async () => {
    // The allowlist let these through as POSTs; the override middleware behind the guard then
    // routed them as another method, past the POST-only route, to a write route.
    await expectRefused(flavor, 'POST', '/acme/web/-/compare', [['X-HTTP-Method-Override', 'PUT']]);
    await expectRefused(flavor, 'POST', '/acme/web/-/compare?_method[0]=get');
    await expectRefused(flavor, 'POST', '/acme/web.git/git-upload-pack', [
      ['X-Method-Override', 'DELETE'],
    ]);
    await expectRefused(flavor, 'POST', '/acme/web.git/info/lfs/objects/batch?_meth%6fd=Patch');
    await expectRefused(flavor, 'POST', '/acme/web/-/compare', [['X-HTTP-Method', 'GET,DELETE']]);
    // An override naming the request's own method changes nothing: git fetch still works.
    const fetch = await expectServed(flavor, 'POST', '/acme/web.git/git-upload-pack', [
      ['X-HTTP-Method-Override', 'POST'],
    ]);
    expect(fetch.route).toBe('git-upload-pack');
    expect((await expectServed(flavor, 'POST', '/acme/web/-/compare')).route).toBe('compare');
  });

  it('allowlisted routes under reserved top-level words: /groups/... and /api/... are not namespace paths', async () => {
    // `POST /*repo/-/compare` matched with repo `groups/acme`, but the router sends the request
    // to the group scope, a write to acme.
    await expectRefused(flavor, 'POST', '/groups/acme/-/compare');
    await expectRefused(flavor, 'POST', '/GROUPS/acme/sub/-/compare');
    await expectRefused(flavor, 'POST', '/groups/acme/web.git/git-upload-pack');
    await expectRefused(flavor, 'POST', '/api/v4/projects/1/web.git/git-upload-pack');
    await expectRefused(flavor, 'POST', '/api/v4/projects/acme%2Fweb/x.git/info/lfs/objects/batch');
    // Namespace paths proper are still allowlisted.
    expect((await expectServed(flavor, 'POST', '/acme/sub/web.git/git-upload-pack')).route).toBe(
      'git-upload-pack',
    );
  });

  it('encoded dash in allowlisted repository paths: `%2D` and `%2f-` end the namespace path once decoded', async () => {
    // The router matched the LFS batch route (its `/-/` literal is compared raw), but the
    // application reads `-` in the decoded repository path and moves on to a write route.
    await expectRefused(flavor, 'POST', '/acme/sub/%2D/blob/main/p.git/info/lfs/objects/batch');
    await expectRefused(flavor, 'POST', '/acme/x.git/%2f-/blob/main/p.git/info/lfs/objects/batch');
    await expectRefused(flavor, 'POST', '/acme/web/%2d/new/main/x.git/git-upload-pack');
    await expectRefused(flavor, 'POST', '/acme/web%2F-%2Fnew/-/compare');
    await expectRefused(flavor, 'POST', '/acme/%zz/web.git/git-upload-pack');
    // A dash inside a name is not a segment.
    expect(
      (await expectServed(flavor, 'POST', '/acme/my-sub/web.git/info/lfs/objects/batch')).route,
    ).toBe('lfs-batch');
  });

  it('doubled slash after the mount prefix: an Express 4 mount swallows it, the allowlist must not absorb it', async () => {
    // Express 4 mounts `/gitlab` as `^\/gitlab\/?(?=\/|$)`, so the mounted app routes
    // `/gitlab//groups/acme/-/compare` as `/groups/acme/-/compare`: a write to acme. The guard
    // sees `//groups/acme/-/compare`, which `POST /*repo/-/compare` matched with repo `/groups/acme`.
    for (const deployment of ['front', 'inside'] as const) {
      await expectRefused(flavor, 'POST', '/gitlab//groups/acme/-/compare', [], deployment);
      await expectRefused(
        flavor,
        'POST',
        '/gitlab//groups/acme/web.git/git-upload-pack',
        [],
        deployment,
      );
      await expectRefused(flavor, 'POST', '/gitlab//acme/web/-/compare', [], deployment);
    }
    await expectRefused(flavor, 'POST', '//groups/acme/-/compare');
    await expectRefused(flavor, 'POST', '/acme//web.git/info/lfs/objects/batch');
  });

  it('numeric id coercion: `.1e1`, `+.1e1`, `0x1`, `0b1` read as project 1 under Number()', async () => {
    for (const id of ['.1e1', '+.1e1', '0x1', '0b1', '1.0', '.1E1']) {
      await expectRefused(flavor, 'POST', `/api/v4/projects/${id}/issues`);
      await expectRefused(flavor, 'PUT', `/api/v4/groups/${id}`);
    }
    // Canonical ids and full paths of writable namespaces pass.
    expect((await expectServed(flavor, 'POST', '/api/v4/projects/2/issues')).namespaces).toEqual([
      'open',
    ]);
    expect(
      (await expectServed(flavor, 'POST', '/api/v4/projects/open%2Fweb/issues')).namespaces,
    ).toEqual(['open']);
  });

  it('double-encoded and encoded dot segments: refused wherever a later layer could resolve them', async () => {
    // The router resolves none of these, so the handler gets `open` plus `..` and `acme`; a
    // proxy, a framework or a handler joining the path resolves them into acme.
    for (const target of [
      '/open/%2e%2e/acme/web',
      '/open/%2E%2e/acme/web/-/issues',
      '/open/..%2Facme/web',
      '/open/%2e%2e%2facme',
      '/open/%252e%252e/acme/web',
      '/open/x/..%5C..%5Cacme',
      '/groups/open/../acme/-/edit',
      '/open/../acme/web.git/git-receive-pack',
      '/api/v4/projects/open%2F..%2Facme%2Fweb/issues',
      '/open/./web/..;/../acme',
    ]) {
      await expectRefused(flavor, 'POST', target);
    }
    // Dot segments also void the allowlist: resolved, this internal-API path is project 1.
    await expectRefused(flavor, 'POST', '/api/v4/internal/../../v4/projects/1');
    // Dots inside names are not dot segments.
    await expectServed(flavor, 'POST', '/open/my.proj/-/blob/main/a.b/..x/x..');
  });

  it('push discovery is a write: the allowlist rule for git fetch discovery (GET info/refs) must not let `service=git-receive-pack` through', async () => {
    // The rule that lets `git fetch` discover refs through a frozen namespace matches the push
    // discovery too (same route, another query), and the verdict asks the allowlist for every
    // write it would refuse: `git push` starts against a namespace in maintenance.
    await expectRefused(flavor, 'GET', '/acme/web.git/info/refs?service=git-receive-pack');
    await expectRefused(flavor, 'GET', '/acme/sub/web.git/info/refs?service=git-receive-pack');
    for (const deployment of ['front', 'inside'] as const) {
      await expectRefused(
        flavor,
        'GET',
        '/gitlab/acme/web.git/info/refs?service=git-receive-pack',
        [],
        deployment,
      );
    }
    // The fetch discovery still passes.
    const fetch = await expectServed(
      flavor,
      'GET',
      '/acme/web.git/info/refs?service=git-upload-pack',
    );
    expect(fetch.write).toBe(false);
  });

  it('backslash after a mount prefix, with a `#` in the target: the router reads `\\` as `/`, the mount slices the raw URL', async () => {
    // A `#` sends Express's path parsing (parseurl) to url.parse, which turns `\` into `/`: the
    // guard, like the router's matching, reads `/api/v4/internal/x` and lets the write through as
    // the allowlisted internal API. But the `/api/v4` mount strips its prefix from the raw URL,
    // so the API router routes `//internal/x`, which its internal routes do not match: the API's
    // catch-all writes while the whole instance is in maintenance. Found with seed 987654321.
    for (const deployment of ['top', 'front', 'inside'] as const) {
      const root = deployment === 'top' ? '' : '/gitlab';
      for (const target of [
        '/api/v4\\internal/x#',
        '/api/v3\\internal#',
        '/api/v4\\internal/x?a=1#',
      ]) {
        await expectRefused(flavor, 'POST', `${root}${target}`, [], deployment, 'maintenance');
      }
    }
    // The internal API itself still passes.
    const internal = await expectServed(
      flavor,
      'POST',
      '/api/v4/internal/x',
      [],
      'top',
      'maintenance',
    );
    expect(internal.route).toBe('api internal');
  });

  it('writeRoutes: a rule for GET must cover HEAD, which Express routes to the GET handler', async () => {
    // The victim's guard has `writeRoutes: [{ method: 'GET', path: '/*repo/-/export' }]`: the
    // GET export is refused in maintenance, but a HEAD is a read to the guard, and Express runs
    // the GET route's handler for it (without sending the body): the export starts anyway.
    await expectRefused(flavor, 'GET', '/acme/web/-/export');
    await expectRefused(flavor, 'HEAD', '/acme/web/-/export');
    await expectRefused(flavor, 'HEAD', '/acme/sub/web/-/export');
    await expectRefused(flavor, 'HEAD', '/gitlab/acme/web/-/export', [], 'front');
    await expectRefused(flavor, 'HEAD', '/open/web/-/export', [], 'top', 'maintenance');
    // A writable namespace still exports.
    expect((await expectServed(flavor, 'HEAD', '/open/web/-/export')).route).toBe('export');
  });

  it('writeRoutes: a rule must match every method the request can be routed as, overrides included', async () => {
    // OPTIONS is a read, and `_method=GET` names a read, so the guard lets it through; the
    // method-override middleware behind it routes the request as a GET, to the export.
    await expectRefused(flavor, 'OPTIONS', '/acme/web/-/export?_method=GET');
    await expectRefused(flavor, 'OPTIONS', '/acme/web/-/export', [
      ['X-HTTP-Method-Override', 'GET'],
    ]);
    await expectRefused(flavor, 'TRACE', '/acme/web/-/export', [['X-Method-Override', 'get']]);
    // Without an override, OPTIONS does not reach the export (the route answers GET only).
    expect((await expectServed(flavor, 'OPTIONS', '/acme/web/-/export')).route).toBe('dash');
  });

  it('dot segments under a mount: /gitlab/.. and %2e forms around the relative URL root', async () => {
    for (const deployment of ['front', 'inside'] as const) {
      await expectRefused(flavor, 'POST', '/gitlab/open/%2e%2e/acme/web', [], deployment);
      await expectRefused(flavor, 'POST', '/gitlab/%2e/acme/web', [], deployment);
    }
  });
});
