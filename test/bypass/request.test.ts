import { createServer, type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { bypassTokenOf, cookieValue } from '../../src/bypass/request.js';

/**
 * Where a request carries its bypass token: the header, else the `nsro_bypass` cookie, found by
 * a small strict cookie parser that never throws.
 */

const TOKEN = 'v1.YWNtZQ.lq8h2k3s.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ';

/** A request with these headers, as `bypassTokenOf` sees one. */
function req(headers: IncomingHttpHeaders): IncomingMessage {
  return { headers } as IncomingMessage;
}

describe('bypassTokenOf', () => {
  it('no header and no cookie: null', () => {
    expect(bypassTokenOf(req({}))).toBeNull();
    expect(bypassTokenOf(req({ cookie: 'session=abc; theme=dark' }))).toBeNull();
  });

  it('the header', () => {
    expect(bypassTokenOf(req({ 'x-namespace-read-only-bypass': TOKEN }))).toBe(TOKEN);
    expect(bypassTokenOf(req({ 'x-namespace-read-only-bypass': ` ${TOKEN} ` }))).toBe(TOKEN);
  });

  it('a repeated header: its first value', () => {
    expect(bypassTokenOf(req({ 'x-namespace-read-only-bypass': `${TOKEN}, other` }))).toBe(TOKEN);
    expect(bypassTokenOf(req({ 'x-namespace-read-only-bypass': [TOKEN, 'other'] }))).toBe(TOKEN);
  });

  it('the header wins over the cookie', () => {
    expect(
      bypassTokenOf(req({ 'x-namespace-read-only-bypass': TOKEN, cookie: 'nsro_bypass=other' })),
    ).toBe(TOKEN);
  });

  it('an empty header: the cookie', () => {
    expect(
      bypassTokenOf(req({ 'x-namespace-read-only-bypass': ' ', cookie: `nsro_bypass=${TOKEN}` })),
    ).toBe(TOKEN);
    expect(bypassTokenOf(req({ 'x-namespace-read-only-bypass': '' }))).toBeNull();
  });

  it('the cookie, alone or among others', () => {
    expect(bypassTokenOf(req({ cookie: `nsro_bypass=${TOKEN}` }))).toBe(TOKEN);
    expect(bypassTokenOf(req({ cookie: `a=1; nsro_bypass=${TOKEN}; b=2` }))).toBe(TOKEN);
    expect(bypassTokenOf(req({ cookie: `a=1;nsro_bypass=${TOKEN};b=2` }))).toBe(TOKEN);
    expect(bypassTokenOf(req({ cookie: `a=1 ;  nsro_bypass = ${TOKEN}  ; b=2` }))).toBe(TOKEN);
  });

  it('a quoted cookie value', () => {
    expect(bypassTokenOf(req({ cookie: `a=1; nsro_bypass="${TOKEN}"` }))).toBe(TOKEN);
  });

  it('a cookie whose name only contains ours is not ours', () => {
    expect(bypassTokenOf(req({ cookie: `x_nsro_bypass=${TOKEN}; nsro_bypass_old=x` }))).toBeNull();
    expect(bypassTokenOf(req({ cookie: `a=nsro_bypass; NSRO_BYPASS=${TOKEN}` }))).toBeNull();
  });

  it('the first well-formed one of several', () => {
    expect(bypassTokenOf(req({ cookie: `nsro_bypass=${TOKEN}; nsro_bypass=other` }))).toBe(TOKEN);
    expect(bypassTokenOf(req({ cookie: `nsro_bypass="bad; nsro_bypass=${TOKEN}` }))).toBe(TOKEN);
  });

  it('repeated Cookie headers, as Node joins them, over a real socket', async () => {
    let seen: string | null | undefined;
    const server = createServer((incoming, res) => {
      seen = bypassTokenOf(incoming);
      res.end();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const { port } = server.address() as AddressInfo;
      await new Promise<void>((done, fail) => {
        const r = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          res.resume();
          res.on('end', done);
        });
        r.setHeader('Cookie', ['a=1', `nsro_bypass=${TOKEN}`]);
        r.on('error', fail);
        r.end();
      });
      expect(seen).toBe(TOKEN);
    } finally {
      server.close();
    }
  });
});

describe('a malformed Cookie header: its bad pairs are skipped, nothing throws', () => {
  it.each<[string, string, string | null]>([
    ['empty', '', null],
    ['only separators', ';;; ;', null],
    ['no value', 'nsro_bypass', null],
    ['an empty value', 'nsro_bypass=', null],
    ['empty quotes', 'nsro_bypass=""', null],
    ['an unbalanced quote', 'nsro_bypass="abc', null],
    ['a lone quote', 'nsro_bypass="', null],
    ['a quote inside', 'nsro_bypass=a"b', null],
    ['a space inside', 'nsro_bypass=a b', null],
    ['a comma inside', 'nsro_bypass=a,b', null],
    ['a backslash inside', 'nsro_bypass=a\\b', null],
    ['a control character', 'nsro_bypass=a\u0001b', null],
    ['non-ASCII', 'nsro_bypass=äö', null],
    ['no name', '=x; nsro_bypass', null],
    ['a name with no `=` before ours', `junk; nsro_bypass=${TOKEN}`, TOKEN],
    ['an `=` in the value', 'nsro_bypass=a=b', 'a=b'],
    ['a malformed pair before ours', `x="; nsro_bypass=${TOKEN}`, TOKEN],
    ['many separators and pairs', `${'a;'.repeat(5000)}nsro_bypass=${TOKEN}`, TOKEN],
  ])('%s', (_name, header, expected) => {
    expect(cookieValue(header, 'nsro_bypass')).toBe(expected);
    expect(bypassTokenOf(req({ cookie: header }))).toBe(expected);
  });

  it('a header that is not a string (a mock, a bad framework) is no cookie', () => {
    expect(
      bypassTokenOf(req({ cookie: ['nsro_bypass=x'] } as unknown as IncomingHttpHeaders)),
    ).toBeNull();
  });
});
