import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { mountRemainders, stripPrefix } from '../../src/request/path.js';

/**
 * The path the application receives: the whole pathname, less the mount of the sub-app the
 * request is in (`req.app`, its `mountpath` and `parent`, as `app.use(path, subApp)` records
 * them) or `relativeUrlRoot`, whichever is longer. Router mounts (`req.baseUrl`) stay.
 */

interface FakeApp {
  mountpath: unknown;
  parent?: FakeApp;
}

const ROOT: FakeApp = { mountpath: '/' };

/** Sub-apps mounted one inside the other, outermost first; the innermost is `req.app`. */
function mountedAt(...mountpaths: unknown[]): FakeApp {
  let app = ROOT;
  for (const mountpath of mountpaths) app = { mountpath, parent: app };
  return app;
}

function req(app?: FakeApp, baseUrl?: string): IncomingMessage {
  return { app, baseUrl } as unknown as IncomingMessage;
}

describe('stripPrefix', () => {
  it.each([
    ['no Express app', undefined, undefined],
    ['the root app', ROOT, undefined],
    ['the root app, under a router mount', ROOT, '/api/v4'],
    ['the root app, under app.use("/api", guard)', ROOT, '/api'],
  ])('%s: the whole path', (_name, app, baseUrl) => {
    const path = '/api/v4/projects/acme%2Fproj';
    expect(stripPrefix(req(app, baseUrl), path, '')).toBe(path);
  });

  it.each([
    [['/gitlab'], '/gitlab/acme/x', '/acme/x'],
    [['/gitlab'], '/GitLab/acme/x', '/acme/x'],
    [['/GitLab'], '/gitlab/acme/x', '/acme/x'],
    [['/gitlab/'], '/gitlab/acme/x', '/acme/x'],
    [['/gitlab'], '/gitlab', '/'],
    [['/gitlab'], '/gitlab/', '/'],
    [['/a/b'], '/a/b/acme/x', '/acme/x'],
    [['/git%20lab'], '/GIT%20LAB/acme/x', '/acme/x'],
    [['/v1.0'], '/v1.0/acme/x', '/acme/x'],
    // A doubled slash after the last mount is left for the grammar, which refuses it.
    [['/gitlab'], '/gitlab//acme/x', '//acme/x'],
    [['/gitlab', '/gitlab'], '/gitlab/gitlab/acme/x', '/acme/x'],
    // Express 4 swallows one doubled slash after a mount, and the next mount matches after it.
    [['/gitlab', '/gitlab'], '/gitlab//gitlab/acme/x', '/acme/x'],
    [['/gitlab', '/gitlab'], '/GITLAB//Gitlab/acme/x', '/acme/x'],
    [['/gitlab', '/gitlab'], '/gitlab/gitlab//acme/x', '//acme/x'],
    // `app.use(subApp)` mounts at `/`, which takes up nothing.
    [['/gitlab', '/'], '/gitlab/acme/x', '/acme/x'],
    [['/', '/gitlab'], '/gitlab/acme/x', '/acme/x'],
  ])('a sub-app mounted at %j: %s is %s', (mounts, path, expected) => {
    expect(stripPrefix(req(mountedAt(...mounts), '/ignored'), path, '')).toBe(expected);
  });

  it.each([
    ['an array', [['/a', '/b']], '/a/acme/x'],
    ['a one-element array', [['/a']], '/a/acme/x'],
    ['a RegExp', [/^\/a/], '/a/acme/x'],
    ['a parameter', ['/t/:tenant'], '/t/one/acme/x'],
    ['an Express 4 wildcard', ['/w*'], '/wx/acme/x'],
    ['an Express 5 wildcard', ['/w/*rest'], '/w/x/acme/x'],
    ['an optional group', ['/a{/b}'], '/a/acme/x'],
    ['regex syntax Express 4 would obey', ['/a|b'], '/a|b/acme/x'],
    ['no leading slash', ['gitlab'], '/gitlab/acme/x'],
    ['an empty segment', ['/a//b'], '/a//b/acme/x'],
    ['an unknowable outer mount', [['/a', '/b'], '/gitlab'], '/a/gitlab/acme/x'],
    ['a path outside the mount', ['/gitlab'], '/other/acme/x'],
    ['a path that only starts like it', ['/gitlab'], '/gitlabx/acme/x'],
    ['two doubled slashes between mounts', ['/gitlab', '/gitlab'], '/gitlab///gitlab/acme/x'],
    ['a doubled slash before the first mount', ['/gitlab'], '//gitlab/acme/x'],
  ])('a sub-app mount with %s cannot be measured: null', (_name, mounts, path) => {
    expect(stripPrefix(req(mountedAt(...mounts)), path, '')).toBeNull();
    expect(stripPrefix(req(mountedAt(...mounts)), path, '/gitlab')).toBeNull();
  });

  it('a parent cycle is not an application: null', () => {
    const app: FakeApp = { mountpath: '/a' };
    app.parent = app;
    expect(stripPrefix(req(app), '/a/a/a/acme', '')).toBeNull();
  });

  describe('with relativeUrlRoot, whichever is longer', () => {
    it.each([
      [[], '/gitlab', '/gitlab/acme/x', '/acme/x'],
      [[], '/gitlab', '/GITLAB/acme/x', '/acme/x'],
      [[], '/gitlab', '/gitlabx/acme/x', '/gitlabx/acme/x'],
      [[], '/gitlab', '/other/acme/x', '/other/acme/x'],
      [['/gitlab'], '/gitlab', '/gitlab/acme/x', '/acme/x'],
      [['/gitlab'], '/gitlab', '/gitlab/gitlab/acme/x', '/gitlab/acme/x'],
      [['/gitlab'], '/gitlab/gitlab', '/gitlab/gitlab/acme/x', '/acme/x'],
      [['/gitlab', '/gitlab'], '/gitlab', '/gitlab/gitlab/acme/x', '/acme/x'],
    ])('mounts %j, root %s: %s is %s', (mounts, root, path, expected) => {
      expect(stripPrefix(req(mountedAt(...mounts)), path, root)).toBe(expected);
    });
  });
});

describe('mountRemainders', () => {
  it.each([
    ['/', ['/']],
    ['/acme', ['/acme']],
    ['/a1/acme/x', ['/a1/acme/x', '/acme/x', '/x']],
    ['/a//acme/', ['/a//acme/', '//acme/', '/acme/', '/']],
  ])('%s: %j', (path, expected) => {
    expect(mountRemainders(path)).toEqual(expected);
  });
});
