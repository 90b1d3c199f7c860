import type { ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { answerKind } from './answer-kind.js';
import { acceptGzipFor, inflating } from './compression.js';
import type { HeaderMap } from './headers.js';

const h = (o: Record<string, string>): HeaderMap => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, { values: [v] }]));
const LIST = '/api/v1/namespaces/a/configmaps';

describe('acceptGzipFor', () => {
  it('asks for gzip on a GET read whole whose client said nothing about encodings', () => {
    const headers = h({ accept: 'application/json' });
    expect(acceptGzipFor('GET', answerKind(LIST), headers)).toBe(true);
    expect(headers['accept-encoding']).toEqual({ values: ['gzip'] });
  });

  it.each([
    ['a HEAD', 'HEAD', LIST, {}],
    ['a client that says what it accepts', 'GET', LIST, { 'accept-encoding': 'identity' }],
    ['a byte range', 'GET', LIST, { range: 'bytes=0-99' }],
    ['an If-Range', 'GET', LIST, { 'if-range': '"x"' }],
    ['a watch', 'GET', `${LIST}?watch`, {}],
    ['logs -f', 'GET', '/api/v1/namespaces/a/pods/p/log?follow=true', {}],
    ["a backend's HTTP behind /proxy/", 'GET', '/api/v1/namespaces/a/services/web/proxy/', {}],
  ])('leaves %s alone', (_what, method, uri, extra) => {
    const headers = h(extra);
    expect(acceptGzipFor(method, answerKind(uri), headers)).toBe(false);
    expect(headers).toEqual(h(extra));
  });
});

describe('inflating', () => {
  const res = () => new PassThrough() as unknown as ServerResponse;

  it('inflates a 200 in gzip: no Content-Encoding, Content-Length or Accept-Ranges, a weak ETag, Vary kept', async () => {
    const out = res();
    const got = inflating(
      200,
      h({ 'content-encoding': 'gzip', 'content-length': '20', 'accept-ranges': 'bytes', etag: '"abc"', vary: 'Accept-Encoding' }),
      out,
    );
    expect(got?.headers).toEqual(h({ etag: 'W/"abc"', vary: 'Accept-Encoding' }));
    got!.body.end(gzipSync('{"items":[]}'));
    expect(Buffer.concat(await (out as unknown as PassThrough).toArray()).toString()).toBe('{"items":[]}');
  });

  it.each([
    ['a 206', 206, { 'content-encoding': 'gzip' }],
    ['a 304', 304, { 'content-encoding': 'gzip' }],
    ['a 200 not in gzip', 200, {}],
    ['a 200 in two encodings', 200, { 'content-encoding': 'gzip, br' }],
  ])('leaves %s alone', (_what, status, headers) => {
    expect(inflating(status, h(headers), res())).toBeUndefined();
  });
});
