import request from 'supertest';
import { describe, expect, it } from 'vitest';
import {
  MemoryStateStore,
  type NamespaceReadOnlyOptions,
  namespaceReadOnly,
  OptionsError,
} from '../src/index.js';
import { expressVersions, guardedApp } from './helpers/apps.js';

/** Creates a guard with `options` (bypassing the types, as a JavaScript caller would). */
function create(options: unknown) {
  return namespaceReadOnly(options as NamespaceReadOnlyOptions);
}

/** The OptionsError `create(options)` throws. */
function optionsError(options: unknown): OptionsError {
  try {
    create(options);
  } catch (error) {
    expect(error).toBeInstanceOf(OptionsError);
    return error as OptionsError;
  }
  throw new Error(`no error for ${JSON.stringify(options)}`);
}

const noop = () => {};
const silentLogger = { warn: noop, info: noop, debug: noop, error: noop };

describe('OptionsError', () => {
  it('is exported, a TypeError, with a stable code and the option name', () => {
    const error = optionsError({ retryAfter: 0 });
    expect(error).toBeInstanceOf(TypeError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('OptionsError');
    expect(error.code).toBe('ERR_NSRO_OPTION');
    expect(error.option).toBe('retryAfter');
    expect(error.message).toMatch(/^namespace-read-only: option `retryAfter` must be /);
  });

  it('is thrown when the guard is created, not on the first request', () => {
    expect(() => create({ onStoreError: 'sometimes' })).toThrow(OptionsError);
  });
});

describe('valid options', () => {
  it('accepts no options, undefined, null and {}', () => {
    for (const options of [undefined, null, {}]) {
      const guard = create(options);
      expect(guard).toBeTypeOf('function');
      expect(guard.store).toBeInstanceOf(MemoryStateStore);
    }
    expect(namespaceReadOnly()).toBeTypeOf('function');
  });

  it('accepts every option at once', () => {
    const store = new MemoryStateStore();
    const guard = create({
      store,
      routes: ['/t/:namespace{/*rest}'],
      allowlist: [{ method: ['POST', 'put'], path: '/t/:namespace/login', when: () => true }],
      relativeUrlRoot: '/gitlab',
      resolveId: () => null,
      retryAfter: 1,
      onStoreError: 'open',
      timeout: 250,
      message: 'Back soon',
      logger: silentLogger,
      fence: false,
    });
    expect(guard.store).toBe(store);
  });

  it.each([
    ['retryAfter', 31_536_000],
    ['timeout', 1],
    ['relativeUrlRoot', ''],
    ['relativeUrlRoot', '/'],
    ['relativeUrlRoot', '/a/b'],
    ['onStoreError', 'closed'],
    ['allowlist', []],
    ['allowlist', [{ method: '*', path: '/x' }]],
    ['routes', { resolve: () => ({ type: 'none' }) }],
    ['logger', console],
    ['logger', false],
    ['fence', false],
  ])('accepts %s = %j', (option, value) => {
    expect(() => create({ [option]: value })).not.toThrow();
  });
});

describe('invalid options', () => {
  it.each([
    ['a string', 'closed'],
    ['an array', []],
    ['a number', 5],
    ['a function', () => {}],
  ])('rejects options that are %s', (_, options) => {
    const error = optionsError(options);
    expect(error.option).toBe('options');
    expect(error.message).toContain('an object');
  });

  describe.each<[string, unknown, RegExp]>([
    ['retryAfter', 0, /whole number of seconds/],
    ['retryAfter', -5, /whole number of seconds/],
    ['retryAfter', 1.5, /whole number of seconds/],
    ['retryAfter', Number.NaN, /whole number of seconds/],
    ['retryAfter', Number.POSITIVE_INFINITY, /whole number of seconds/],
    ['retryAfter', '900', /whole number of seconds/],
    ['retryAfter', 31_536_001, /between 1 and 31536000/],
    ['retryAfter', null, /whole number of seconds/],
    ['timeout', 0, /whole number >= 1/],
    ['timeout', 2.5, /whole number >= 1/],
    ['timeout', '1000', /whole number >= 1/],
    ['onStoreError', 'OPEN', /'closed' or 'open'/],
    ['onStoreError', 'fail-open', /'closed' or 'open'/],
    ['onStoreError', true, /'closed' or 'open'/],
    ['onStoreError', null, /'closed' or 'open'/],
    ['logger', {}, /pino-compatible logger/],
    ['logger', { warn: noop, info: noop, error: noop }, /warn, info, debug, error/],
    ['logger', { ...silentLogger, warn: 'loud' }, /pino-compatible logger/],
    ['logger', noop, /pino-compatible logger/],
    ['logger', null, /pino-compatible logger/],
    ['logger', true, /pino-compatible logger \(warn, info, debug, error\) or false/],
    ['logger', 'warn', /or false/],
    ['relativeUrlRoot', 'gitlab', /leading slash/],
    ['relativeUrlRoot', '/gitlab/', /no trailing slash/],
    ['relativeUrlRoot', '/git lab', /a path like "\/gitlab"/],
    ['relativeUrlRoot', '/gitlab?x=1', /no query/],
    ['relativeUrlRoot', '//gitlab', /a path like/],
    ['relativeUrlRoot', 5, /a path like/],
    ['relativeUrlRoot', null, /a path like/],
    ['store', {}, /get, set and delete/],
    ['store', { get: noop, set: noop }, /get, set and delete/],
    ['store', 'memory', /state store/],
    ['store', null, /state store/],
    ['routes', [], /at least one pattern/],
    ['routes', 'gitlab', /gitlabRoutes\(\)/],
    ['routes', {}, /resolve\(\)/],
    ['routes', null, /gitlabRoutes\(\)/],
    ['allowlist', {}, /an array of \{ method, path \} rules/],
    ['allowlist', 'none', /an array/],
    ['resolveId', 'ids', /a function/],
    ['resolveId', {}, /a function/],
    ['message', '', /a non-empty string/],
    ['message', 42, /a non-empty string/],
    ['fence', 'yes', /true or false/],
    ['fence', 1, /true or false/],
    ['fence', null, /true or false/],
  ])('%s = %j', (option, value, expected) => {
    it('throws an OptionsError naming the option and what was expected', () => {
      const error = optionsError({ [option]: value });
      expect(error.code).toBe('ERR_NSRO_OPTION');
      expect(error.option).toBe(option);
      expect(error.message).toContain(`option \`${option}\``);
      expect(error.message).toMatch(expected);
      expect(error.message).toMatch(/; received /);
    });
  });

  it('says what it received, without dumping objects', () => {
    expect(optionsError({ retryAfter: '900' }).message).toMatch(/received "900"$/);
    expect(optionsError({ retryAfter: 0 }).message).toMatch(/received 0$/);
    expect(optionsError({ logger: {} }).message).toMatch(/received an object$/);
    expect(optionsError({ logger: noop }).message).toMatch(/received a function$/);
    expect(optionsError({ allowlist: null }).message).toMatch(/received null$/);
  });

  it('never reads allowlist: null as "use the default allowlist"', () => {
    const error = optionsError({ allowlist: null });
    expect(error.option).toBe('allowlist');
    expect(error.message).toContain('an array');
  });
});

describe('fence (the migration fence is opt-in)', () => {
  /** A store that supports the fence, counting the guards that register with it. */
  function fencingStore() {
    const registered: unknown[] = [];
    const store = {
      get: async () => null,
      set: async () => {},
      delete: async () => {},
      register: (inflight: unknown) => {
        registered.push(inflight);
        return { holdsLease: () => true, release: async () => {} };
      },
    };
    return { store, registered };
  }

  it('registers with a store that supports it only when fence is true', () => {
    const off = fencingStore();
    create({ store: off.store });
    create({ store: off.store, fence: false });
    expect(off.registered).toEqual([]);

    const on = fencingStore();
    create({ store: on.store, fence: true });
    expect(on.registered).toHaveLength(1);
  });

  it('fence: true with a store lacking register() throws an OptionsError naming `fence`', () => {
    for (const options of [{ fence: true }, { store: new MemoryStateStore(), fence: true }]) {
      const error = optionsError(options);
      expect(error.code).toBe('ERR_NSRO_OPTION');
      expect(error.option).toBe('fence');
      expect(error.message).toContain('option `fence`');
      expect(error.message).toMatch(/RedisStateStore/);
      expect(error.message).toMatch(/; received true$/);
    }
  });

  it("fence: true with onStoreError: 'open' throws an OptionsError naming `onStoreError`", () => {
    const { store, registered } = fencingStore();
    const error = optionsError({ store, fence: true, onStoreError: 'open' });
    expect(error.code).toBe('ERR_NSRO_OPTION');
    expect(error.option).toBe('onStoreError');
    expect(error.message).toContain('option `onStoreError`');
    expect(error.message).toContain("'closed' when `fence` is on");
    expect(error.message).toMatch(/; received "open"$/);
    expect(registered).toEqual([]);
  });

  it("accepts onStoreError: 'open' without the fence, and 'closed' with it", () => {
    const { store } = fencingStore();
    expect(() => create({ store, onStoreError: 'open' })).not.toThrow();
    expect(() => create({ store, onStoreError: 'open', fence: false })).not.toThrow();
    expect(() => create({ store, onStoreError: 'closed', fence: true })).not.toThrow();
  });
});

describe('unknown options', () => {
  it.each([
    ['relativeURLRoot', 'relativeUrlRoot'],
    ['retryafter', 'retryAfter'],
    ['retry_after', 'retryAfter'],
    ['onStoreErrors', 'onStoreError'],
    ['allowList', 'allowlist'],
    ['loger', 'logger'],
    ['route', 'routes'],
  ])('rejects %s with a did-you-mean hint for %s', (key, hint) => {
    const error = optionsError({ [key]: 'x' });
    expect(error.code).toBe('ERR_NSRO_OPTION');
    expect(error.option).toBe(key);
    expect(error.message).toContain(`option \`${key}\``);
    expect(error.message).toContain(`did you mean \`${hint}\`?`);
  });

  it('rejects a key far from every option without a misleading hint', () => {
    const error = optionsError({ failClosed: true });
    expect(error.option).toBe('failClosed');
    expect(error.message).toContain('one of the known options');
    expect(error.message).not.toContain('did you mean');
  });

  it('rejects an unknown key even when its value is undefined', () => {
    expect(optionsError({ retryafter: undefined }).option).toBe('retryafter');
  });
});

describe('allowlist rules', () => {
  const good = { method: 'POST', path: '/users/sign_in' };

  it.each<[string, unknown, string, RegExp]>([
    ['a rule that is not an object', [good, 'POST /x'], 'allowlist[1]', /an object/],
    ['a null rule', [null], 'allowlist[0]', /an object/],
    [
      'a path without a leading slash',
      [good, { method: 'POST', path: 'users/x' }],
      'allowlist[1].path',
      /starting with "\/"/,
    ],
    ['a missing path', [{ method: 'POST' }], 'allowlist[0].path', /starting with "\/"/],
    [
      'an unparsable pattern',
      [good, good, { method: 'POST', path: '/x/:' }],
      'allowlist[2].path',
      /valid path-to-regexp v8 pattern/,
    ],
    [
      'a v6-style optional parameter',
      [{ method: 'POST', path: '/x/:id?' }],
      'allowlist[0].path',
      /valid path-to-regexp v8 pattern/,
    ],
    [
      'a method that is not a method',
      [good, { method: 'PO ST', path: '/x' }],
      'allowlist[1].method',
      /an HTTP method/,
    ],
    ['an empty method list', [{ method: [], path: '/x' }], 'allowlist[0].method', /an HTTP method/],
    ['a missing method', [{ path: '/x' }], 'allowlist[0].method', /an HTTP method/],
    [
      'a when that is not a function',
      [{ method: 'POST', path: '/x', when: true }],
      'allowlist[0].when',
      /a function/,
    ],
  ])('rejects %s, naming the index', (_, allowlist, option, expected) => {
    const error = optionsError({ allowlist });
    expect(error.option).toBe(option);
    expect(error.message).toContain(`option \`${option}\``);
    expect(error.message).toMatch(expected);
  });
});

describe('route patterns', () => {
  it.each<[string, unknown, string, RegExp]>([
    [
      'a pattern without a namespace parameter',
      ['/t/:name'],
      'routes[0]',
      /`:namespace` parameter/,
    ],
    ['a pattern not starting with /', ['t/:namespace'], 'routes[0]', /starting with "\/"/],
    ['a bad second pattern', ['/t/:namespace', '/x/:id'], 'routes[1]', /`:namespace` parameter/],
    [
      'an unparsable pattern',
      ['/t/:namespace', '/x/('],
      'routes[1]',
      /valid path-to-regexp v8 pattern/,
    ],
    ['a pattern that is not a string', [42], 'routes[0]', /a path-to-regexp pattern/],
  ])('rejects %s, naming the index', (_, routes, option, expected) => {
    const error = optionsError({ routes });
    expect(error.option).toBe(option);
    expect(error.message).toContain(`option \`${option}\``);
    expect(error.message).toMatch(expected);
  });

  it('accepts a namespace parameter inside an optional group or as a wildcard', () => {
    expect(() => create({ routes: ['/t{/:namespace}'] })).not.toThrow();
    expect(() => create({ routes: ['/orgs/*namespace'] })).not.toThrow();
  });
});

describe.each(expressVersions)('defaults ($name)', ({ express }) => {
  const undefinedOptions: NamespaceReadOnlyOptions = {
    routes: undefined,
    allowlist: undefined,
    relativeUrlRoot: undefined,
    resolveId: undefined,
    retryAfter: undefined,
    onStoreError: undefined,
    message: undefined,
    logger: undefined,
  };

  it.each([
    ['no options', {}],
    ['every option undefined', undefinedOptions],
  ])('%s: gitlab routes and allowlist, 900 s, fail closed', async (_, options) => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    await store.set('*', 'active');
    const { app, handled } = guardedApp(express, { ...options, store });
    const blocked = await request(app).post('/acme/x').set('Accept', 'application/json');
    expect(blocked.status).toBe(503);
    expect(blocked.headers['retry-after']).toBe('900');
    expect(blocked.body.message).toMatch(/maintenance/);
    // gitlabRoutes(): `/groups/<path>` names the group's root namespace.
    expect((await request(app).post('/groups/acme/sub/-/edit')).status).toBe(503);
    // gitlabAllowlist(): a git fetch passes.
    expect((await request(app).post('/acme/proj.git/git-upload-pack')).status).toBe(200);
    expect(handled.map((h) => h.url)).toEqual(['/acme/proj.git/git-upload-pack']);

    const failing = {
      get: () => Promise.reject(new Error('down')),
      set: async () => {},
      delete: async () => {},
    };
    const closed = guardedApp(express, { ...options, store: failing });
    expect((await request(closed.app).post('/other/x')).status).toBe(503);
    expect(closed.handled).toEqual([]);
  });

  it('the guard with {} and with no argument answer alike', async () => {
    for (const guard of [namespaceReadOnly(), namespaceReadOnly({})]) {
      await guard.store.set('acme', 'maintenance');
      const app = express();
      app.use(guard);
      app.use((_req, res) => {
        res.end('ok');
      });
      const res = await request(app).post('/acme/x');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('900');
      expect((await request(app).post('/other/x')).status).toBe(200);
    }
  });

  it('an empty allowlist lets nothing through', async () => {
    const store = new MemoryStateStore();
    await store.set('*', 'maintenance');
    const { app } = guardedApp(express, { store, allowlist: [] });
    expect((await request(app).post('/users/sign_in')).status).toBe(503);
  });

  it('relativeUrlRoot "/" is the same as none', async () => {
    const store = new MemoryStateStore();
    await store.set('acme', 'maintenance');
    const { app } = guardedApp(express, { store, relativeUrlRoot: '/' });
    expect((await request(app).post('/acme/x')).status).toBe(503);
  });
});
