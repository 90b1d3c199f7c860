import { describe, expect, it } from 'vitest';
import { isPlainHttpUrl, plainHttpHint } from './plain-http.js';

describe('the plain-HTTP hint', () => {
  it('takes only http:// URLs for plain HTTP', () => {
    expect(isPlainHttpUrl('http://127.0.0.1:8154')).toBe(true);
    expect(isPlainHttpUrl('https://kas.example.com/k8s-proxy')).toBe(false);
  });

  it('names what is plain HTTP, why kubectl gets "no credentials", and both ways out', () => {
    expect(plainHttpHint('the server http://a:1', 'pass --server with')).toBe(
      'the server http://a:1 is plain HTTP, and kubectl sends no bearer token over it, so every request is refused as "no credentials"; give the Verdict server a tls block, or pass --server with the https:// URL of a proxy that terminates TLS in front of it',
    );
  });
});
