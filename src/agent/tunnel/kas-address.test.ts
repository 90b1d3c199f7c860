import { describe, expect, it } from 'vitest';
import { parseKasAddress } from './kas-address.js';

describe('parseKasAddress', () => {
  it('parses grpc and grpcs', () => {
    expect(parseKasAddress('grpc://127.0.0.1:8150')).toMatchObject({ scheme: 'grpc', target: '127.0.0.1:8150' });
    expect(parseKasAddress('grpcs://kas.example.com')).toMatchObject({ scheme: 'grpcs', target: 'kas.example.com:443' });
  });
  it('refuses an unknown scheme at start-up', () => {
    expect(() => parseKasAddress('http://kas:80')).toThrow(/scheme "http" is not supported; use grpc:\/\/, grpcs:\/\/, ws:\/\/ or wss:\/\//);
  });
  it('asks for the trailing slash on WebSocket addresses', () => {
    expect(() => parseKasAddress('wss://kas.example.com/-/kubernetes-agent')).toThrow(/must end with a slash/);
  });
  it('refuses what is not a URL', () => {
    expect(() => parseKasAddress('kas:8150')).toThrow(/scheme "kas" is not supported/);
    expect(() => parseKasAddress('not a url')).toThrow(/is not a URL/);
  });
});
