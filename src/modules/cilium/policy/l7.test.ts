import { describe, expect, it } from 'vitest';
import { compileAnchored, compileHttpRule, compileNameMatcher, httpRequestFrom, httpRuleMatches, nameMatches } from './l7.js';

describe('HTTP', () => {
  it('splits Hubble URLs into host and path with query', () => {
    expect(httpRequestFrom('GET', 'http://api.shop:8080/a/b?x=1#frag', [])).toMatchObject({ host: 'api.shop:8080', path: '/a/b?x=1' });
    expect(httpRequestFrom('GET', '/only/path', [{ key: 'Host', value: 'h' }])).toMatchObject({ host: 'h', path: '/only/path' });
    expect(httpRequestFrom('GET', 'http://h', [])).toMatchObject({ path: '/' });
  });

  it('anchors regular expressions; (?i) becomes a flag', () => {
    expect(compileAnchored('/a|/b', 'x').test('/b')).toBe(true);
    expect(compileAnchored('/a|/b', 'x').test('/ab')).toBe(false);
    expect(compileAnchored('(?i)get', 'x').test('GET')).toBe(true);
    expect(() => compileAnchored('[', 'p.path')).toThrow(/^p\.path: "\[" is not a valid regular expression/);
  });

  it('matches method, path, host and headers together', () => {
    const r = compileHttpRule(
      {
        method: 'POST',
        path: '/items/[0-9]+',
        host: 'api\\.shop(:8080)?',
        headers: ['X-Token'],
        headerMatches: [
          { name: 'X-Env', value: 'prod' },
          { name: 'X-Log', value: 'x', mismatch: 'LOG' },
        ],
      },
      'r',
    );
    const req = (h: { key: string; value: string }[], url = 'http://api.shop:8080/items/12') => httpRequestFrom('POST', url, h);
    expect(
      httpRuleMatches(
        r,
        req([
          { key: 'x-token', value: 'a' },
          { key: 'X-Env', value: 'prod' },
        ]),
      ),
    ).toBe(true);
    expect(
      httpRuleMatches(
        r,
        req([
          { key: 'x-token', value: 'a' },
          { key: 'X-Env', value: 'dev' },
        ]),
      ),
    ).toBe(false);
    expect(httpRuleMatches(r, req([{ key: 'X-Env', value: 'prod' }]))).toBe(false);
    expect(
      httpRuleMatches(
        r,
        req(
          [
            { key: 'x-token', value: 'a' },
            { key: 'X-Env', value: 'prod' },
          ],
          'http://evil.shop/items/12',
        ),
      ),
    ).toBe(false);
  });
});

describe('DNS names', () => {
  const m = (o: object, n: string) => nameMatches(compileNameMatcher(o, 'f'), n);
  it('matchName is exact, case and trailing dot aside', () => {
    expect(m({ matchName: 'api.example.com' }, 'API.example.com.')).toBe(true);
    expect(m({ matchName: 'api.example.com' }, 'xapi.example.com')).toBe(false);
  });
  it('matchPattern: * within one label, ** across labels, lone * for all', () => {
    expect(m({ matchPattern: '*.example.com' }, 'a.example.com')).toBe(true);
    expect(m({ matchPattern: '*.example.com' }, 'a.b.example.com')).toBe(false);
    expect(m({ matchPattern: '**.example.com' }, 'a.b.example.com')).toBe(true);
    expect(m({ matchPattern: 'api-*.example.com' }, 'api-eu.example.com')).toBe(true);
    expect(m({ matchPattern: '*' }, 'anything.at.all')).toBe(true);
  });
  it('rejects what is not a name', () => {
    expect(() => compileNameMatcher({}, 'f')).toThrow(/needs matchName or matchPattern/);
    expect(() => compileNameMatcher({ matchName: 'a b' }, 'f')).toThrow(/is not a DNS name/);
  });
});
